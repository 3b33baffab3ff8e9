"""Login lockout (issue 11, security 3): django-axes on the admin and the portal sign-in, by
username and by address after AXES_FAILURE_LIMIT (10) failures, a Russian page that says so,
and the unlock in the admin. Axes stays on in tests; its attempts live in the database and go
with each test's rollback."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from agency.models import AuditLogEntry
from clients.models import ClientMembership

pytestmark = pytest.mark.django_db

PASSWORD = "pass-12345"  # noqa: S105 - the test users' password (tests/conftest.py)
LOGINS = {"admin": "/admin/login/", "portal": None}


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def login_url(kind: str) -> str:
    return LOGINS[kind] or reverse("portal:login")


@pytest.fixture
def people(django_user_model, client_a):
    """A staff user (admin sign-in) and a portal user (portal sign-in), and one more of each."""
    made = {}
    for kind, staff in (("admin", True), ("portal", False)):
        for name in (f"{kind}-1", f"{kind}-2"):
            user = django_user_model.objects.create_user(
                username=name, password=PASSWORD, is_staff=staff, is_superuser=staff
            )
            if not staff:
                ClientMembership.objects.create(
                    user=user, client=client_a, role=ClientMembership.Role.OWNER
                )
            made[name] = user
    return made


def sign_in(kind: str, username: str, password: str, ip: str):
    """A fresh browser (no session) posting the sign-in form from ``ip``."""
    browser = Client()
    response = browser.post(
        login_url(kind), {"username": username, "password": password}, REMOTE_ADDR=ip
    )
    return response, SESSION_KEY in browser.session


def assert_locked_page(response) -> None:
    assert response.status_code == 429
    page = response.content.decode()
    assert "Вход временно заблокирован" in page
    assert "Слишком много неудачных попыток входа (10)" in page
    assert "администратора агентства" in page
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("kind", ["admin", "portal"])
def test_thirty_wrong_passwords_then_the_right_one_is_refused(people, kind):
    user = f"{kind}-1"
    statuses = [sign_in(kind, user, f"wrong-{n}", "10.1.1.1")[0].status_code for n in range(30)]
    assert statuses[:9] == [200] * 9  # the form again, with its error
    assert set(statuses[9:]) == {429}  # the 10th failure locks
    response, signed_in = sign_in(kind, user, PASSWORD, "10.1.1.1")
    assert not signed_in
    assert_locked_page(response)


@pytest.mark.parametrize("kind", ["admin", "portal"])
def test_the_lock_is_per_username_whatever_the_address(people, kind):
    for n in range(10):
        sign_in(kind, f"{kind}-1", "wrong", f"10.2.0.{n}")  # one failure from each address
    # The username is locked from a new address too...
    response, signed_in = sign_in(kind, f"{kind}-1", PASSWORD, "10.2.9.9")
    assert not signed_in
    assert_locked_page(response)
    # ...while another person signs in from any of those addresses.
    response, signed_in = sign_in(kind, f"{kind}-2", PASSWORD, "10.2.0.1")
    assert signed_in, response.content.decode()[:500]


@pytest.mark.parametrize("kind", ["admin", "portal"])
def test_the_lock_is_per_address_whatever_the_username(people, kind):
    for n in range(10):
        sign_in(kind, f"guess-{n}", "wrong", "10.3.3.3")  # ten usernames, one address
    # The address is locked, also for a real person with the right password...
    response, signed_in = sign_in(kind, f"{kind}-2", PASSWORD, "10.3.3.3")
    assert not signed_in
    assert_locked_page(response)
    # ...who signs in from another address.
    _response, signed_in = sign_in(kind, f"{kind}-2", PASSWORD, "10.3.3.4")
    assert signed_in


def test_nine_failures_do_not_lock(people):
    for _ in range(9):
        sign_in("portal", "portal-1", "wrong", "10.4.4.4")
    _response, signed_in = sign_in("portal", "portal-1", PASSWORD, "10.4.4.4")
    assert signed_in


def test_an_agency_admin_unlocks_from_the_admin(client, people, agency_admin, account_manager):
    for _ in range(12):
        sign_in("portal", "portal-1", "wrong", "10.5.5.5")
    assert not sign_in("portal", "portal-1", PASSWORD, "10.5.5.5")[1]
    changelist = reverse("admin:axes_accessattempt_changelist")

    # Account managers do not see the attempts, let alone unlock.
    client.force_login(account_manager)
    assert client.get(changelist).status_code == 403

    client.force_login(agency_admin)
    page = client.get(changelist).content.decode()
    assert "portal-1" in page
    assert "Разблокировать вход" in page
    attempts = list(AccessAttempt.objects.filter(username="portal-1").values_list("pk", flat=True))
    response = client.post(
        changelist, {"action": "unlock", "_selected_action": attempts}, follow=True
    )
    assert response.status_code == 200
    assert "Вход разблокирован" in response.content.decode()
    assert not AccessAttempt.objects.filter(username="portal-1").exists()
    entry = AuditLogEntry.objects.get(action="login_unlocked")
    assert (entry.actor, entry.details) == (
        agency_admin,
        {"username": "portal-1", "ip": "10.5.5.5"},
    )

    _response, signed_in = sign_in("portal", "portal-1", PASSWORD, "10.5.5.5")
    assert signed_in
