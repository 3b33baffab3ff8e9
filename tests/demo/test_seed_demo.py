"""seed_demo: the demo agency (staff, three clients on three tiers, portal owners, API keys and
a simulated base through the ingestion pipeline), idempotent."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from clients.models import ApiKey, Client, ClientMembership, Customer, Event, Order
from clients.validators import inn_is_valid

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_seed_demo_creates_clients_on_three_tiers_with_orders(fast_passwords, settings):
    settings.DEBUG = True  # development: the password is the username
    lines = run("seed_demo", "--customers", "50")

    clients = list(Client.objects.select_related("tier").order_by("tier__position"))
    assert [c.tier.code for c in clients] == ["foundation", "advanced", "enterprise"]
    for client in clients:
        assert inn_is_valid(client.inn)
        assert Customer.objects.for_client(client).count() == 50
        assert Order.objects.for_client(client).count() > 50  # repeat purchases
        assert Event.objects.for_client(client).filter(type="purchase").exists()
        assert ClientMembership.objects.filter(
            client=client, user__username=f"owner-{client.slug}", role="owner"
        ).exists()
        assert ApiKey.objects.filter(client=client, revoked_at__isnull=True).count() == 1
    user_model = get_user_model()
    assert user_model.objects.get(username="admin").is_superuser
    manager = user_model.objects.get(username="manager")
    assert manager.managed_clients.count() == 2
    assert user_model.objects.get(username="analyst").groups.filter(name="analyst").exists()
    output = "\n".join(lines)
    assert "/admin/" in output
    for login in ("admin / admin", "manager / manager", "analyst / analyst"):
        assert login in output
    for client in clients:
        assert f"owner-{client.slug} / owner-{client.slug}" in output


def test_seed_demo_is_idempotent(fast_passwords):
    run("seed_demo", "--customers", "30")
    counts = (
        Client.objects.count(),
        Customer.objects.unscoped().count(),
        Order.objects.unscoped().count(),
    )

    skipped = run("seed_demo", "--customers", "30", "--if-empty")
    run("seed_demo", "--customers", "30")

    assert "--if-empty" in skipped[-1]
    assert (
        Client.objects.count(),
        Customer.objects.unscoped().count(),
        Order.objects.unscoped().count(),
    ) == counts
    assert get_user_model().objects.filter(username="admin").count() == 1
    for client in Client.objects.all():
        assert ApiKey.objects.filter(client=client, revoked_at__isnull=True).count() == 1


def test_seed_demo_in_production_sets_random_passwords_shown_once(fast_passwords, settings):
    """With DEBUG off no demo user gets a well-known password: random ones, printed once, that
    log in; a re-run keeps them (and shows none), and a user still on username-as-password from
    a development seed gets a random one."""
    settings.DEBUG = False
    get_user_model().objects.create_user(username="manager", password="manager")
    lines = run("seed_demo", "--customers", "20")
    logins = {}
    start = lines.index(next(line for line in lines if line.startswith("Входы")))
    assert "случайные" in lines[start]
    for line in lines[start + 1 :]:
        username, password = line.split()[-3], line.split()[-1]
        logins[username] = password
    users = get_user_model().objects.all()
    assert set(logins) == {u.username for u in users}
    assert len(logins) == 6
    for user in users:
        assert logins[user.username] != user.username
        assert len(logins[user.username]) >= 16
        assert user.check_password(logins[user.username])
        assert not user.check_password(user.username)
    admin = users.get(username="admin")
    assert not admin.check_password("admin")

    again = "\n".join(run("seed_demo", "--customers", "20"))
    for username, password in logins.items():
        assert password not in again
        assert get_user_model().objects.get(username=username).check_password(password)
    assert "пароль прежний" in again
