"""seed_demo: the demo agency (staff, three clients on three tiers, portal owners, API keys and
a simulated base through the ingestion pipeline), idempotent."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from audiences.models import SyncRun
from audiences.sync import sync_run_execute
from clients.models import ApiKey, Client, ClientMembership, Customer, Event, Order
from clients.tiers import tier_has
from clients.validators import inn_is_valid
from demo.audiences import DEMO_VK_CLIENT, DEMO_YANDEX_TOKEN
from integrations.vk_ads import MIN_LIST_LINES as VK_MIN_LIST_LINES
from segments.models import CustomerScore, ScoringRun, Segment, SegmentMembership
from segments.segmentation import WARNING_NO_SCORES
from tests.audiences.conftest import FAST
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.yandex_audiences import YandexAudiencesStub

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
        assert Customer.objects.for_client(client).count() == 50 * (
            4 if client.tier.code == "enterprise" else 1
        )
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


# --------------------------------------------------------------------------------------------
# The first run shows scores, filled segments and a working VK sync


def test_seed_demo_scores_every_client_and_fills_its_segments(fast_passwords):
    run("seed_demo", "--customers", "300")

    for client in Client.objects.select_related("tier"):
        runs = ScoringRun.objects.for_client(client)
        assert [r.status for r in runs] == [ScoringRun.Status.SUCCEEDED], client.slug
        customers = Customer.objects.for_client(client).count()
        assert CustomerScore.objects.for_client(client).count() == customers
        segments = {s.kind: s for s in Segment.objects.for_client(client)}
        expected = {"rfm", "lookalike_seed", "rule", "suppression"}
        if tier_has(client=client, feature="predictive"):
            expected |= {"predictive", "lifecycle"}
        assert set(segments) == expected, client.slug
        for segment in Segment.objects.for_client(client).exclude(kind="suppression"):
            members = SegmentMembership.objects.for_client(client).filter(
                segment=segment, left_at__isnull=True
            )
            assert segment.size > 0, segment.name
            assert members.count() == segment.size, segment.name
            assert WARNING_NO_SCORES not in segment.warnings, segment.name
        # The tier rule holds: at most max_segments active segments.
        if client.tier.max_segments is not None:
            assert len(Segment.objects.for_client(client)) < client.tier.max_segments


def test_seed_demo_enterprise_client_is_four_times_larger(fast_passwords):
    run("seed_demo", "--customers", "40")
    sizes = {
        c.tier.code: Customer.objects.for_client(c).count()
        for c in Client.objects.select_related("tier")
    }
    assert sizes == {"foundation": 40, "advanced": 40, "enterprise": 160}


@pytest.fixture
def demo_stubs(settings):
    """The platform stubs as `make run` starts them (demo credentials), and the settings that
    point the platform clients at them."""
    with (
        YandexAudiencesStub(tokens={DEMO_YANDEX_TOKEN}, quota_per_minute=None) as yandex,
        VkAdsStub(credentials={DEMO_VK_CLIENT[0]: DEMO_VK_CLIENT[1]}) as vk,
    ):
        settings.YANDEX_AUDIENCES_BASE_URL = yandex.base_url
        settings.VK_ADS_BASE_URL = vk.base_url
        yield yandex, vk


def test_first_demo_syncs_include_a_succeeded_vk_sync(fast_passwords, demo_stubs):
    """With the default size, the queued first syncs, executed against the stubs, give the
    Enterprise client a VK audience whose lists pass the 2,000-line minimum."""
    _yandex, vk = demo_stubs
    run("seed_demo")
    # What autovacuum does after a real seed: planner statistics (the test's rows are never
    # committed, so it cannot; without them the snapshot query is planned for empty tables).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    runs = SyncRun.objects.unscoped().filter(status=SyncRun.Status.PENDING).order_by("pk")
    assert runs.count() == 6
    finished = [sync_run_execute(r, http_options=FAST) for r in runs]

    vk_runs = {r.client.slug: r for r in finished if r.audience.destination.platform == "vk_ads"}
    enterprise = vk_runs["sibirskaya-elektronika"]
    assert enterprise.status == SyncRun.Status.SUCCEEDED, enterprise.message or enterprise.error
    lists = enterprise.audience.remote["lists"]
    assert set(lists) == {"emails", "phones"}
    for held in lists.values():
        assert len(vk.list_values(held["id"])) >= VK_MIN_LIST_LINES
    assert len(vk.segments()) == 1
    # The smaller clients' VK lists stay under the minimum and are said to be.
    for slug in ("uyutnyi-dom", "velosport"):
        assert vk_runs[slug].status == SyncRun.Status.SKIPPED
        assert "от 2000" in vk_runs[slug].message
    assert not [r for r in finished if r.status == SyncRun.Status.FAILED]


def test_seed_demo_starts_the_presets_and_a_tick_sends_into_the_stubs(
    fast_passwords, settings, smtp_sink, smsru_stub, rustore_stub
):
    """`make run`'s promise: the demo clients have the agency's presets running, and a tick of
    the engine puts messages into the SMTP sink and the SMS and push stubs."""
    from campaigns.models import Message, TriggerChain
    from campaigns.services import chains_tick

    settings.DEBUG = True
    lines = run("seed_demo", "--customers", "300")
    assert any(line.startswith("Триггерные цепочки") for line in lines)
    advanced = Client.objects.get(tier__code="advanced")
    chains = TriggerChain.objects.for_client(advanced)
    assert set(chains.values_list("preset", flat=True)) == {
        "welcome",
        "no_purchase_30",
        "churn_winback",
        "cascade",
    }
    assert set(chains.values_list("status", flat=True)) == {"active"}
    foundation = Client.objects.get(tier__code="foundation")
    assert TriggerChain.objects.for_client(foundation).filter(status="active").count() == 3
    for client in Client.objects.all():
        chains_tick(client.pk)
    assert Message.objects.unscoped().filter(state="sent", channel="email").exists()
    assert smtp_sink.messages  # real mail in the sink
    html = smtp_sink.messages[0].get_body(("html",)).get_content()
    assert "/t/c/" in html  # a tracked link to the demo shop, for the simulated readers
    assert Message.objects.unscoped().filter(state="holdout").exists()
    # Four days of history: the win-back's SMS (after 72 hours) goes out on the first run.
    assert Message.objects.unscoped().filter(channel="sms", state="sent").exists()
    assert smsru_stub.sent
