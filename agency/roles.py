"""Staff roles in the admin, and which clients each person may see: one place for both."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from .tenancy import tenant_model

AGENCY_ADMIN = "agency_admin"
ACCOUNT_MANAGER = "account_manager"
ANALYST = "analyst"
STAFF_GROUPS = (AGENCY_ADMIN, ACCOUNT_MANAGER, ANALYST)


def staff_role(user: Any) -> str | None:
    """The strongest staff role of ``user``; superusers are agency admins."""
    if not getattr(user, "is_authenticated", False) or not user.is_staff or not user.is_active:
        return None
    if user.is_superuser:
        return AGENCY_ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in STAFF_GROUPS:
        if role in names:
            return role
    return None


def staff_clients(user: Any) -> QuerySet:
    """Clients a staff member works with: admins and analysts all, account managers their own."""
    clients = tenant_model().objects
    role = staff_role(user)
    if role in (AGENCY_ADMIN, ANALYST):
        return clients.all()
    if role == ACCOUNT_MANAGER:
        return clients.assigned_to(user)
    return clients.none()


def portal_clients(user: Any) -> QuerySet:
    """Clients a portal user is a member of."""
    clients = tenant_model().objects
    if not getattr(user, "is_authenticated", False):
        return clients.none()
    return clients.with_member(user)


def user_clients(user: Any) -> QuerySet:
    """Every client a signed-in person may act on: memberships plus staff assignments."""
    return (portal_clients(user) | staff_clients(user)).distinct()


def staff_is_read_only(user: Any) -> bool:
    return staff_role(user) == ANALYST
