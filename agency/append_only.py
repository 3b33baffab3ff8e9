"""Append-only evidence (the audit log, the consent ledger): rows are written once, never
updated or deleted through the ORM. On PostgreSQL a trigger refuses it in the database too."""

from __future__ import annotations

from django.db import models


class AppendOnlyQuerySetMixin:
    """Refuses bulk UPDATE and DELETE."""

    def update(self, **kwargs):
        raise PermissionError(f"{self.model._meta.db_table} is append-only")

    update.alters_data = True

    def delete(self):
        raise PermissionError(f"{self.model._meta.db_table} is append-only")

    delete.alters_data = True


class AppendOnlyModelMixin(models.Model):
    """Refuses saving an existing row and deleting one."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError(f"{self._meta.db_table} is append-only: write a new row")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError(f"{self._meta.db_table} is append-only")
