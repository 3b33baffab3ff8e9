"""One way to write the audit log, for every entry point (admin, API, webhooks, CLI), and one
answer to "which IP is the client?" (``request_ip``)."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from django.conf import settings
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


def audit_object(
    action: str, obj: Any, *, actor: Any, source: str, ip: str | None, details: dict
) -> AuditLogEntry:
    """The audit entry of a service's write to one of a client's objects (the client is the
    object's own)."""
    return audit_log(
        action=action,
        source=source,
        actor=actor,
        client=obj.client_id,
        obj=obj,
        details=details,
        ip=ip,
    )


# --------------------------------------------------------------------------------------------
# The client's IP: the one answer for the audit log, consent evidence and rate limits


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def audit_context(request: Any, *, source: str) -> dict[str, Any]:
    """Who asks (actor, source, IP) for the audit entry a service writes: what the admin and
    the API pass to every service call."""
    return {"actor": request.user, "source": source, "ip": request_ip(request)}


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket (::ffff:203.0.113.7) is that IPv4 client.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def is_trusted_proxy(address: str | None) -> bool:
    """Whether ``address`` is one of ``TRUSTED_PROXIES`` (IPs or CIDR networks)."""
    ip = _ip(address or "")
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return ip is not None and any(ip in network for network in networks)


def request_ip(request: Any) -> str | None:
    """The client's IP address.

    The direct peer (REMOTE_ADDR), unless it is a trusted proxy (``TRUSTED_PROXIES``): then the
    X-Forwarded-For chain is read from the right, past every trusted proxy, and the first address
    that is not one is the client. X-Forwarded-For from anyone else is ignored, so a visitor
    cannot choose the IP that rate limits count and evidence records."""
    peer = _ip(request.META.get("REMOTE_ADDR") or "")
    if peer is None:
        return None
    if not is_trusted_proxy(str(peer)):
        return str(peer)
    client = peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _ip(hop)
        if address is None:
            break  # a malformed entry: nothing to its left can be trusted
        client = address
        if not is_trusted_proxy(str(address)):
            break
    return str(client)
