"""The audit log: who did what to which object of which client, append-only."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .append_only import AppendOnlyModelMixin, AppendOnlyQuerySetMixin
from .i18n import client_localtime


class AuditLogQuerySet(AppendOnlyQuerySetMixin, models.QuerySet):
    pass


class AuditLogEntry(AppendOnlyModelMixin, models.Model):
    class Source(models.TextChoices):
        ADMIN = "admin", _("админка")
        API = "api", "API"
        WEBHOOK = "webhook", _("вебхук")
        CLI = "cli", _("командная строка")
        PORTAL = "portal", _("портал")
        SYSTEM = "system", _("система")

    at = models.DateTimeField(_("время"), auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        # The log outlives users and clients: no cascade, no SET NULL (that would be an UPDATE).
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("пользователь"),
    )
    actor_label = models.CharField(_("кто"), max_length=200, blank=True)
    client = models.ForeignKey(
        settings.TENANT_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("клиент"),
    )
    source = models.CharField(_("источник"), max_length=20, choices=Source.choices)
    action = models.CharField(_("действие"), max_length=60)
    object_type = models.CharField(_("тип объекта"), max_length=100, blank=True)
    object_id = models.CharField(_("id объекта"), max_length=64, blank=True)
    object_repr = models.CharField(_("объект"), max_length=300, blank=True)
    details = models.JSONField(_("подробности"), default=dict, blank=True)
    ip = models.GenericIPAddressField("IP", null=True, blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        verbose_name = _("запись журнала аудита")
        verbose_name_plural = _("журнал аудита")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["client", "-at"], name="audit_client_at")]

    def __str__(self) -> str:
        at = client_localtime(self, self.at)
        return f"{at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_repr}"
