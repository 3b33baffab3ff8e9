"""One way to write the audit log, for every entry point (admin, API, webhooks, CLI)."""

from __future__ import annotations

from typing import Any

from django.db import models

from .i18n import site_language
from .models import AuditLogEntry


def audit_log(
    *,
    action: str,
    source: str,
    actor: Any = None,
    actor_label: str = "",
    client: Any = None,
    obj: models.Model | None = None,
    details: dict | None = None,
    ip: str | None = None,
) -> AuditLogEntry:
    user = (
        actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None
    )
    # A principal that is not a user (an API key) is named by its label.
    named = user or (actor if getattr(actor, "is_authenticated", False) else None)
    label = actor_label or (named.get_username() if hasattr(named, "get_username") else "")
    with site_language():  # evidence: written in the site's language, whoever asked
        represented = str(obj)[:300] if obj is not None else ""
    return AuditLogEntry.objects.create(
        action=action,
        source=source,
        actor=user,
        actor_label=label[:200],
        client_id=getattr(client, "pk", client),
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=represented,
        details=details or {},
        ip=ip,
    )


def request_ip(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") or None
