"""Operations of the scoring pipeline: the task, the daily fan-out, the admin, the CLI, charts."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from clients.ingest import ingest_records
from clients.models import Customer, Tier
from clients.services import client_create
from segments import admin_scoring, rfm, tasks
from segments.models import CustomerScore, ScoringRun, ScoringSettings
from segments.services import scoring_run_execute, scoring_run_request

pytestmark = pytest.mark.django_db

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
AS_OF = dt.date(2026, 7, 1)


def _base(client, customers: int = 40):
    """``customers`` customers with 1-5 paid orders each in the first half of 2026."""
    ingest_records(
        client=client,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(customers)],
    )
    orders = [
        {
            "external_id": f"o{i}-{k}",
            "customer_external_id": f"c{i}",
            "placed_at": f"2026-0{1 + k}-{10 + i % 15}T12:00:00+03:00",
            "amount": str(1000 + 100 * i + (k * 731 + i * 17) % 450),
        }
        for i in range(customers)
        for k in range(i % 5 + 1)
    ]
    ingest_records(client=client, kind="orders", records=orders)
    return client


@pytest.fixture
def base(client_a):
    return _base(client_a)


@pytest.fixture
def refreshed(monkeypatch):
    """Records the memberships refresh the task and the command call after a run."""
    calls = []
    monkeypatch.setattr(tasks, "memberships_refresh_after", lambda run: calls.append(run.pk))
    return calls


def _broken(monkeypatch):
    from segments import services

    def boom(**kwargs):
        raise RuntimeError("boom: no scores today")

    monkeypatch.setattr(services, "compute_scores", boom)


# --------------------------------------------------------------------------------------------
# Tasks


def test_task_runs_a_pending_run_to_success_then_refreshes_segments(base, refreshed, settings):
    run = scoring_run_request(client=base, source="api")
    assert tasks.scoring_run_task(run.pk) == ScoringRun.Status.SUCCEEDED
    run.refresh_from_db()
    assert (run.status, run.progress, run.customers) == (ScoringRun.Status.SUCCEEDED, 100, 40)
    assert CustomerScore.objects.for_client(base).count() == 40
    assert refreshed == [run.pk]

    # A second delivery neither recomputes nor refreshes again.
    computed = set(CustomerScore.objects.for_client(base).values_list("computed_at", flat=True))
    assert tasks.scoring_run_task(run.pk) == ScoringRun.Status.SUCCEEDED
    assert refreshed == [run.pk]
    assert (
        set(CustomerScore.objects.for_client(base).values_list("computed_at", flat=True))
        == computed
    )


def test_task_refreshes_the_clients_segments_from_the_new_scores(base):
    from segments.segmentation import segment_create, segment_members_current

    segment = segment_create(
        client=base,
        name="Все RFM",
        kind="rfm",
        definition={"names": list(rfm.SEGMENTS)},
        refresh=False,
    )
    assert segment_members_current(segment).count() == 0
    run = scoring_run_request(client=base, source="admin")
    assert tasks.scoring_run_task(run.pk) == ScoringRun.Status.SUCCEEDED
    # Every customer with orders has an RFM segment, so all 40 are members now.
    assert segment_members_current(segment).count() == 40


def test_task_of_a_missing_run_does_nothing(db):
    assert tasks.scoring_run_task(987654) is None


def test_failed_task_records_the_error_and_refreshes_nothing(base, refreshed, monkeypatch):
    _broken(monkeypatch)
    run = scoring_run_request(client=base, source="admin")
    with pytest.raises(RuntimeError):
        tasks.scoring_run_task(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.FAILED
    assert "boom" in run.error
    assert refreshed == []


def test_a_failed_segment_refresh_is_written_on_the_run(base, monkeypatch):
    def refresh(run):
        raise ValueError("segment rule broken")

    monkeypatch.setattr(tasks, "memberships_refresh_after", refresh)
    run = scoring_run_request(client=base, source="admin")
    with pytest.raises(ValueError, match="segment rule broken"):
        tasks.scoring_run_task(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED  # the scores are written
    assert run.error == "Сегменты не обновлены: ValueError: segment rule broken"


def test_daily_fan_out_one_run_per_active_client_once_a_day(
    client_a, client_b, monkeypatch, django_capture_on_commit_callbacks
):
    asleep = client_create(name="Спящий клиент", tier_code="foundation")
    asleep.is_active = False
    asleep.save(update_fields=["is_active"])
    sent = []
    monkeypatch.setattr(tasks.scoring_run_task, "delay", lambda run_id: sent.append(run_id))

    with django_capture_on_commit_callbacks(execute=True):
        created = tasks.scoring_daily_task()
    runs = ScoringRun.objects.unscoped().order_by("pk")
    assert sorted(created) == sorted(sent) == [r.pk for r in runs]
    assert sorted(r.client_id for r in runs) == sorted([client_a.pk, client_b.pk])
    assert {r.source for r in runs} == {"beat"}
    assert {r.status for r in runs} == {ScoringRun.Status.PENDING}

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.scoring_daily_task() == []
    assert ScoringRun.objects.unscoped().count() == 2
    assert len(sent) == 2


def test_setup_periodic_tasks_schedules_the_daily_fan_out_at_3_moscow():
    from django_celery_beat.models import PeriodicTask

    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(task="segments.tasks.scoring_daily_task")
    assert (task.crontab.minute, task.crontab.hour) == ("0", "3")
    assert str(task.crontab.timezone) == "Europe/Moscow"
    assert task.interval is None

    # An edited schedule is kept by a second setup.
    task.crontab.hour = "4"
    task.crontab.save()
    call_command("setup_periodic_tasks", stdout=StringIO())
    assert PeriodicTask.objects.get(pk=task.pk).crontab.hour == "4"


# --------------------------------------------------------------------------------------------
# Last and next run per client


def test_next_run_comes_from_the_beat_schedule_and_skips_a_client_run_today(client_a, client_b):
    call_command("setup_periodic_tasks", stdout=StringIO())
    now = dt.datetime(2026, 1, 10, 2, 0, tzinfo=MSK)  # before today's 03:00 fan-out
    run = scoring_run_request(client=client_a, source="admin")
    ScoringRun.objects.for_client(client_a).filter(pk=run.pk).update(
        created_at=dt.datetime(2026, 1, 10, 1, 0, tzinfo=MSK)
    )
    rows = {
        row["client"].pk: row
        for row in admin_scoring.scoring_overview(
            client_a.__class__.objects.filter(pk__in=[client_a.pk, client_b.pk]), now=now
        )
    }
    assert rows[client_a.pk]["last"].pk == run.pk
    assert rows[client_a.pk]["active"] is True
    # client_a already ran today: today's fan-out skips it, so its next run is tomorrow.
    assert rows[client_a.pk]["next_run"] == dt.datetime(2026, 1, 11, 3, 0, tzinfo=MSK)
    assert rows[client_b.pk]["last"] is None
    assert rows[client_b.pk]["next_run"] == dt.datetime(2026, 1, 10, 3, 0, tzinfo=MSK)


def test_next_run_says_when_the_schedule_is_missing_or_paused(client_a):
    from django_celery_beat.models import PeriodicTask

    [row] = admin_scoring.scoring_overview(client_a.__class__.objects.filter(pk=client_a.pk))
    assert row["next_run"] is None
    assert "setup_periodic_tasks" in row["note"]
    call_command("setup_periodic_tasks", stdout=StringIO())
    PeriodicTask.objects.filter(task=admin_scoring.DAILY_TASK).update(enabled=False)
    [row] = admin_scoring.scoring_overview(client_a.__class__.objects.filter(pk=client_a.pk))
    assert row["next_run"] is None
    assert "приостановлен" in row["note"]


# --------------------------------------------------------------------------------------------
# Admin: recompute now, the run list and page


RECOMPUTE = "admin:segments_scoringrun_recompute"


def test_manager_recomputes_own_client_and_lands_on_the_run_page(
    client, account_manager, client_a, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tasks.scoring_run_task, "delay", lambda run_id: sent.append(run_id))
    call_command("setup_periodic_tasks", stdout=StringIO())
    client.force_login(account_manager)
    overview = client.get(reverse(RECOMPUTE))
    assert overview.status_code == 200
    assert 'value="Пересчитать сейчас"' in overview.content.decode()
    # The next run of the daily schedule, at 03:00 Moscow (the admin's time zone).
    assert re.search(r'class="next-run">\d\d\.\d\d\.\d{4} 03:00<', overview.content.decode())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(RECOMPUTE), {"client": client_a.pk})
    run = ScoringRun.objects.for_client(client_a).get()
    assert response.status_code == 302
    assert response.url == reverse("admin:segments_scoringrun_change", args=[run.pk])
    assert (run.source, run.triggered_by, run.status) == ("admin", account_manager, "pending")
    assert sent == [run.pk]

    # The run page refreshes itself while the run waits.
    page = client.get(response.url).content.decode()
    assert '<meta http-equiv="refresh" content="3">' in page

    # A second click while it waits opens the same run instead of queueing another one.
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(reverse(RECOMPUTE), {"client": client_a.pk})
    assert again.url == response.url
    assert ScoringRun.objects.for_client(client_a).count() == 1
    assert sent == [run.pk]


def test_manager_gets_404_for_another_clients_recompute_and_charts(
    client, account_manager, client_b, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tasks.scoring_run_task, "delay", lambda run_id: sent.append(run_id))
    client.force_login(account_manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(RECOMPUTE), {"client": client_b.pk})
    assert response.status_code == 404
    assert client.post(reverse(RECOMPUTE), {"client": "nonsense"}).status_code == 404
    assert ScoringRun.objects.for_client(client_b).count() == 0
    assert sent == []
    analytics = reverse("admin:segments_scoringrun_analytics", args=[client_b.pk])
    assert client.get(analytics).status_code == 404
    assert f'data-client="{client_b.pk}"' not in client.get(reverse(RECOMPUTE)).content.decode()


def test_analyst_sees_schedule_and_charts_but_cannot_recompute(client, analyst, client_a):
    client.force_login(analyst)
    overview = client.get(reverse(RECOMPUTE)).content.decode()
    assert f'data-client="{client_a.pk}"' in overview
    assert 'value="Пересчитать сейчас"' not in overview
    response = client.post(reverse(RECOMPUTE), {"client": client_a.pk})
    assert response.status_code == 403
    assert ScoringRun.objects.for_client(client_a).count() == 0
    analytics = reverse("admin:segments_scoringrun_analytics", args=[client_a.pk])
    assert client.get(analytics).status_code == 200
    listing = client.get(reverse("admin:segments_scoringrun_changelist")).content.decode()
    assert "Расписание и аналитика" in listing


def test_failed_run_is_red_with_its_error_in_the_list(client, agency_admin, base, monkeypatch):
    _broken(monkeypatch)
    run = scoring_run_request(client=base, source="admin")
    with pytest.raises(RuntimeError):
        scoring_run_execute(run=run)
    client.force_login(agency_admin)
    page = client.get(reverse("admin:segments_scoringrun_changelist")).content.decode()
    assert "scoring-status-failed" in page
    assert "color: #ba2121" in page
    assert "RuntimeError: boom: no scores today" in page
    overview = client.get(reverse(RECOMPUTE)).content.decode()
    assert "RuntimeError: boom: no scores today" in overview


def test_run_page_shows_parameters_holdout_stages_and_transitions(client, agency_admin, base):
    scoring_run_execute(run=scoring_run_request(client=base, source="admin"), as_of=AS_OF)
    second = scoring_run_execute(
        run=scoring_run_request(client=base, source="admin"), as_of=dt.date(2026, 10, 1)
    )
    client.force_login(agency_admin)
    page = client.get(reverse("admin:segments_scoringrun_change", args=[second.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'http-equiv="refresh"' not in html  # finished: no refresh
    assert "BG/NBD" in html
    assert "Gamma-Gamma" in html
    assert f"{second.parameters['bgnbd']['r']:.6f}" in html
    assert "scoring-holdout" in html or "Не проводилась" in html
    for stage in second.stage_seconds:
        assert f"<td>{stage}</td>" in html
    # Every customer moved from some segment to some segment: the row totals add up to 40.
    table = html.split('class="scoring-table scoring-transitions"')[1].split("</table>")[0]
    totals = [int(n) for n in re.findall(r"<td>(\d+)</td></tr>", table)]
    assert sum(totals) == 40
    # Nobody can edit or delete a run.
    assert 'name="_save"' not in html


def test_scoring_settings_one_per_client_and_consistent_thresholds(
    client, account_manager, client_a
):
    client.force_login(account_manager)
    url = reverse("admin:segments_scoringsettings_add")
    form = {
        "client": client_a.pk,
        "onboarding_days": 30,
        "at_risk_after_days": 45,
        "win_back_after_days": 40,
        "clv_months": 12,
        "monthly_discount_rate": "0.01",
        "gross_margin": "0.35",
        "holdout_days": 90,
    }
    response = client.post(url, form)
    assert response.status_code == 200  # the form again, with the error
    assert "не может быть меньше" in response.content.decode()
    assert ScoringSettings.objects.for_client(client_a).count() == 0
    form["win_back_after_days"] = 90
    assert client.post(url, form).status_code == 302
    assert client.post(url, form).status_code == 200  # a second row for the client is refused
    assert ScoringSettings.objects.for_client(client_a).count() == 1


# --------------------------------------------------------------------------------------------
# score_client


def test_score_client_prints_stages_parameters_and_holdout(base, refreshed):
    out = StringIO()
    call_command("score_client", base.slug, "--as-of", "2026-07-01", stdout=out, stderr=StringIO())
    text = out.getvalue()
    run = ScoringRun.objects.for_client(base).get()
    assert run.status == ScoringRun.Status.SUCCEEDED
    assert run.source == "cli"
    assert run.as_of == AS_OF
    for stage in ("extract", "rfm", "lifecycle", "fit", "clv", "write"):
        assert re.search(rf"^  {stage}\s+\d+\.\d{{3}}$", text, re.M), stage
    assert "Параметры bgnbd: r=" in text
    assert "Параметры gamma_gamma: p=" in text
    assert "Проверка на контрольном периоде" in text
    assert "покупателей 40" in text
    assert refreshed == [run.pk]


def test_score_client_fails_with_a_non_zero_exit(base, refreshed, monkeypatch):
    _broken(monkeypatch)
    out = StringIO()
    with pytest.raises(CommandError, match="boom"):
        call_command("score_client", base.slug, stdout=out, stderr=StringIO())
    run = ScoringRun.objects.for_client(base).get()
    assert run.status == ScoringRun.Status.FAILED
    assert "Ошибка: RuntimeError: boom" in out.getvalue()
    assert refreshed == []
    with pytest.raises(CommandError, match="нет клиента"):
        call_command("score_client", "no-such-client", stdout=out)
    with pytest.raises(CommandError):
        call_command("score_client", base.slug, "--as-of", "01.07.2026", stdout=out)


def test_score_client_exit_code_through_manage_py(base, monkeypatch):
    """manage.py turns the CommandError into exit status 1 (what cron and CI see)."""
    from django.core.management import ManagementUtility

    _broken(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "score_client", base.slug]).execute()
    assert exit_info.value.code == 1


# --------------------------------------------------------------------------------------------
# Charts on a small hand-built base


@pytest.fixture
def small_base(client_a):
    """Four customers with orders (one with none), scores set by hand.

    Orders (Moscow time, paid unless said):
      k1: 2025-01-05 1000, 2025-02-10 500, 2025-03-01 700
      k2: 2025-01-20 2000, 2025-02-11 9999 refunded
      k3: 2025-02-03 400, 2025-03-15 100
      k4: 2025-01-31 23:30 300, 2025-02-01 00:30 600 (the local day decides the month)
    Cohort 2025-01 = {k1, k2, k4}: month 1 {k1, k4} 66.67 %, month 2 {k1} 33.33 %;
    revenue per customer 3300/3 = 1100, then 4400/3 = 1466.67, then 5100/3 = 1700.
    Cohort 2025-02 = {k3}: month 1 100 %.
    """
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"k{i}"} for i in range(1, 6)],
    )
    orders = [
        ("k1", "2025-01-05T12:00:00+03:00", "1000", "paid"),
        ("k1", "2025-02-10T12:00:00+03:00", "500", "paid"),
        ("k1", "2025-03-01T12:00:00+03:00", "700", "paid"),
        ("k2", "2025-01-20T12:00:00+03:00", "2000", "paid"),
        ("k2", "2025-02-11T12:00:00+03:00", "9999", "refunded"),
        ("k3", "2025-02-03T12:00:00+03:00", "400", "paid"),
        ("k3", "2025-03-15T12:00:00+03:00", "100", "paid"),
        ("k4", "2025-01-31T23:30:00+03:00", "300", "paid"),
        ("k4", "2025-02-01T00:30:00+03:00", "600", "paid"),
    ]
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": f"o{n}",
                "customer_external_id": c,
                "placed_at": at,
                "amount": amount,
                "status": status,
            }
            for n, (c, at, amount, status) in enumerate(orders)
        ],
    )
    ids = dict(Customer.objects.for_client(client_a).values_list("external_id", "pk"))
    scores = {
        "k1": (5, 5, 5),  # FM 5: Champions
        "k2": (5, 4, 5),  # FM (4+5+1)//2 = 5: Champions
        "k3": (1, 1, 2),  # FM 2: Lost
        "k4": (3, 3, 3),  # FM 3: Need Attention
        "k5": (None, None, None),  # no orders
    }
    now = timezone.now()
    for external_id, (r, f, m) in scores.items():
        CustomerScore.objects.create(
            customer_id=ids[external_id],
            client=client_a,
            r_score=r,
            f_score=f,
            m_score=m,
            frequency=0 if r is None else 1,
            monetary=Decimal("0"),
            computed_at=now,
        )
    return client_a


def _cells(html: str, pattern: str) -> dict[tuple[str, str], str]:
    return {(a, b): v for a, b, v in re.findall(pattern, html)}


def test_rfm_heatmap_counts_customers_per_cell(client, analyst, small_base):
    client.force_login(analyst)
    url = reverse("admin:segments_scoringrun_analytics", args=[small_base.pk])
    html = client.get(url).content.decode()
    counts = _cells(html, r'data-r="(\d)" data-fm="(\d)" data-count="(\d+)"')
    assert len(counts) == 25
    assert {k: int(v) for k, v in counts.items() if v != "0"} == {
        ("5", "5"): 2,
        ("1", "2"): 1,
        ("3", "3"): 1,
    }
    cell = html.split('data-r="5" data-fm="5"')[1].split("</td>")[0]
    assert "Чемпионы" in cell  # the segment's name; its code Champions is in data-segment
    assert "50,0%" in cell
    assert '<strong class="rfm-scored">4</strong>' in html
    assert '<span class="rfm-without-orders">1</span>' in html
    segments = dict(re.findall(r'<tr data-segment="([^"]+)"><td>[^<]+</td><td>(\d+)</td>', html))
    assert (segments["Champions"], segments["Lost"], segments["Need Attention"]) == ("2", "1", "1")
    assert sum(int(n) for n in segments.values()) == 4
    assert "vendor/chartjs/chart.umd.min.js" in html


def test_cohort_triangle_shows_retention_and_revenue_per_customer(client, analyst, small_base):
    small_base.tier = Tier.objects.get(code="advanced")  # cohort analysis is Advanced CVM's
    small_base.save(update_fields=["tier"])
    client.force_login(analyst)
    url = reverse("admin:segments_scoringrun_analytics", args=[small_base.pk])
    html = client.get(url).content.decode()

    def row(cohort: str, page: str) -> tuple[str, dict[str, str]]:
        body = page.split(f'<tr data-cohort="{cohort}">')[1].split("</tr>")[0]
        size = re.search(r'class="cohort-size">(\d+)<', body).group(1)
        return size, dict(re.findall(r'data-month="(\d+)" data-value="([\d.]+)"', body))

    size, values = row("2025-01", html)
    assert size == "3"
    assert (values["0"], values["1"], values["2"], values["3"]) == (
        "100.00",
        "66.67",
        "33.33",
        "0.00",
    )
    size, values = row("2025-02", html)
    assert (size, values["0"], values["1"], values["2"]) == ("1", "100.00", "100.00", "0.00")

    revenue = client.get(url, {"metric": "cumulative_revenue_per_customer"}).content.decode()
    size, values = row("2025-01", revenue)
    assert (values["0"], values["1"], values["2"]) == ("1100.00", "1466.67", "1700.00")
    size, values = row("2025-02", revenue)
    assert (values["0"], values["1"]) == ("400.00", "500.00")


def test_cohorts_refused_on_foundation_naming_the_tier_that_has_them(client, analyst, small_base):
    """Foundation's seeded row has cohorts off: the RFM charts stay, the triangle does not."""
    assert small_base.tier.code == "foundation"
    assert not small_base.tier.cohorts
    client.force_login(analyst)
    url = reverse("admin:segments_scoringrun_analytics", args=[small_base.pk])
    html = client.get(url).content.decode()
    refusal = html.split('<p class="cohorts-refusal">')[1].split("</p>")[0]
    assert refusal == (
        "Когортный анализ доступен с тарифа Advanced CVM; у клиента тариф Foundation."
    )
    assert "data-cohort=" not in html
    assert 'data-r="5" data-fm="5" data-count="2"' in html


def test_lost_and_dead_scoring_runs_are_sent_again(client_a, settings):
    from datetime import timedelta

    from django.utils import timezone

    from segments.services import scoring_runs_recover

    now = timezone.now()
    long_ago = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)

    def run(status, created, started=None):
        # One active run per client (a constraint): each run has a client of its own.
        client = client_create(name=f"Клиент {status} {created:%H%M%S%f}", tier_code="foundation")
        r = ScoringRun.objects.create(client=client, status=status)
        ScoringRun.objects.unscoped().filter(pk=r.pk).update(created_at=created, started_at=started)
        return r.pk

    lost = run("pending", now - timedelta(hours=2))
    fresh = run("pending", now - timedelta(minutes=1))
    dead = run("running", long_ago, started=long_ago)
    alive = run("running", now - timedelta(minutes=5), started=now)
    assert scoring_runs_recover(now=now) == [lost, dead]  # oldest first
    statuses = dict(ScoringRun.objects.unscoped().values_list("pk", "status"))
    assert (statuses[dead], statuses[alive], statuses[fresh]) == ("pending", "running", "pending")
