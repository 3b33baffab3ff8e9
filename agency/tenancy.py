"""The tenancy rule, in one place.

Every row of a client's data carries ``client_id``. Reads go through a queryset scoped to one
client: ``Model.objects.for_client(client)``. A queryset that was never scoped refuses to run
(fails closed) unless the caller says ``.unscoped()`` on purpose (agency-wide admin lists,
maintenance). Look-ups by id go through :func:`get_scoped_object_or_404`, which answers the same
404 for "does not exist" and "belongs to another client".
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import models
from django.http import Http404
from django.utils.translation import gettext_lazy

CLIENT_FILTER_KEYS = frozenset({"client", "client_id", "client__in", "client_id__in"})


def tenant_model() -> type[models.Model]:
    """The tenant model (``settings.TENANT_MODEL``, "clients.Client"), looked up by name so that
    this core package never imports the app above it. Its default manager offers
    ``assigned_to(user)`` (staff assignments) and ``with_member(user)`` (portal memberships)."""
    return apps.get_model(settings.TENANT_MODEL)


class TenantScopeError(RuntimeError):
    """A query on tenant data ran without a client scope."""


class TenantQuerySet(models.QuerySet):
    """A queryset that knows whether it was scoped to a client and refuses to run otherwise."""

    _client_scoped: bool = False

    def _clone(self):
        clone = super()._clone()
        clone._client_scoped = self._client_scoped
        return clone

    def _filter_or_exclude(self, negate, args, kwargs):
        clone = super()._filter_or_exclude(negate, args, kwargs)
        # Related managers (client.customers) and explicit filters on the tenant key scope it.
        if not negate and CLIENT_FILTER_KEYS.intersection(kwargs):
            clone._client_scoped = True
        return clone

    def for_client(self, client: Any) -> TenantQuerySet:
        client_id = getattr(client, "pk", client)
        if client_id is None:
            raise TenantScopeError("for_client() needs a saved client")
        return self.filter(client_id=client_id)

    def unscoped(self) -> TenantQuerySet:
        """An explicit escape for code that really works across clients."""
        clone = self._clone()
        clone._client_scoped = True
        return clone

    def _require_scope(self) -> None:
        if not self._client_scoped:
            raise TenantScopeError(
                f"{self.model.__name__} queried without a client scope; "
                "use .for_client(client) (or .unscoped() on purpose)"
            )

    def _fetch_all(self):
        if self._result_cache is None:
            self._require_scope()
        super()._fetch_all()

    def iterator(self, *args, **kwargs):
        self._require_scope()
        return super().iterator(*args, **kwargs)

    def count(self):
        self._require_scope()
        return super().count()

    def exists(self):
        self._require_scope()
        return super().exists()

    def aggregate(self, *args, **kwargs):
        self._require_scope()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs):
        self._require_scope()
        return super().update(**kwargs)

    update.alters_data = True

    def delete(self):
        self._require_scope()
        return super().delete()

    delete.alters_data = True


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Default manager of tenant models: querysets start unscoped and refuse to run."""


class TenantModel(models.Model):
    """Base of every model holding a client's data: its own ``client`` key and a fail-closed
    manager."""

    client = models.ForeignKey(
        settings.TENANT_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("клиент"),
        db_index=False,  # every table's composite indexes lead with client_id
    )

    objects = TenantManager()

    class Meta:
        abstract = True


M = TypeVar("M", bound=models.Model)


def get_scoped_object_or_404(model: type[M], client: Any, **lookup: Any) -> M:
    """Fetch one object of ``client``: the same 404 whether it is missing or someone else's."""
    return get_from_scoped_or_404(model.objects.for_client(client), **lookup)


def get_from_scoped_or_404(queryset: TenantQuerySet, **lookup: Any) -> Any:
    """One object from an already scoped queryset; malformed ids are a 404 too, not a 500."""
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404(f"{queryset.model._meta.verbose_name} not found") from exc
