"""Every periodic task of the platform, declared here and nowhere else.

``python manage.py setup_periodic_tasks`` writes them into django-celery-beat (where staff can
pause them or change the schedule in the admin); it is idempotent and keeps edited schedules.

Each entry has a ``name`` (unique, shown in the admin), a ``task`` (its dotted name) and one
schedule:

- ``every_seconds``: an interval;
- ``crontab``: ``{"minute", "hour", "day_of_week", "day_of_month", "month_of_year"}`` (each
  optional, default ``"*"``) plus ``timezone`` (default: the ``TIME_ZONE`` setting).

``was_every_seconds`` lists former defaults of an interval: an entry still on one of them (never
edited in the admin) is moved to the current one.
"""

PERIODIC_TASKS: list[dict] = [
    {
        "name": "Повторная отправка зависших импортов CSV",
        "task": "clients.tasks.import_jobs_recover_task",
        "every_seconds": 60,
        "was_every_seconds": [300],
    },
    {
        "name": "Повторная отправка зависших запусков скоринга",
        "task": "segments.tasks.scoring_runs_recover_task",
        "every_seconds": 60,
        "was_every_seconds": [600],
    },
    {
        "name": "Повторная отправка зависших синхронизаций аудиторий",
        "task": "audiences.tasks.audience_syncs_recover_task",
        "every_seconds": 60,
        "was_every_seconds": [600],
    },
    {
        # Retries of deferred syncs and syncs after withdrawals (audiences.services).
        "name": "Внеплановые синхронизации аудиторий",
        "task": "audiences.tasks.audience_syncs_wanted_task",
        "every_seconds": 60,
    },
    {
        # One scoring run per active client (segments.tasks fans out one task per client).
        "name": "Ежедневный пересчёт скоринга клиентов",
        "task": "segments.tasks.scoring_daily_task",
        "crontab": {"minute": "0", "hour": "3"},
        "timezone": "Europe/Moscow",
    },
    {
        # Customer KPIs per month (reports.kpis), one task per active client, after the
        # scoring run above (a client whose run is still under way waits for its scores).
        "name": "Ежедневный пересчёт KPI клиентов",
        "task": "reports.tasks.kpis_daily_task",
        "crontab": {"minute": "0", "hour": "5"},
        "timezone": "Europe/Moscow",
    },
    {
        # A signed checkpoint of every client's consent ledger in the audit log (consent.tasks
        # fans out one task per client); verify_consent_log holds the chain against them.
        "name": "Ежедневные контрольные точки журнала согласий",
        "task": "consent.tasks.consent_checkpoints_daily_task",
        "crontab": {"minute": "30", "hour": "0"},
        "timezone": "Europe/Moscow",
    },
    {
        # Trigger chains: enrol, exit, schedule and send, one task per client with work
        # (campaigns.tasks fans out); a message is never sent twice (campaigns.dispatch).
        "name": "Триггерные цепочки: такт",
        "task": "campaigns.tasks.chains_tick_all_task",
        "every_seconds": 60,
    },
    {
        # Messages left "sending" by a worker that died: back to the queue only where the
        # provider takes an idempotency key, else marked "outcome unknown" (never resent).
        "name": "Триггерные цепочки: зависшие отправки",
        "task": "campaigns.tasks.outbox_recover_task",
        "every_seconds": 60,
    },
    {
        # Yandex Direct spend of yesterday and the day before, one task per client with an
        # active Direct account (reports.tasks fans out); a day is replaced, never doubled.
        "name": "Ежедневный импорт расходов Яндекс Директа",
        "task": "reports.tasks.direct_spend_import_daily_task",
        "crontab": {"minute": "30", "hour": "6"},
        "timezone": "Europe/Moscow",
    },
    {
        # Roistat spend, Calltouch calls (yesterday and the day before again: platforms revise
        # their figures) and Metrica offline conversions: one task per active account
        # (reports.tasks fans out; a failing account records its error, the others go on).
        "name": "Расходы, звонки и офлайн-конверсии: ежедневный импорт",
        "task": "reports.tasks.ad_accounts_import_daily_task",
        "crontab": {"minute": "30", "hour": "5"},
        "timezone": "Europe/Moscow",
    },
    {
        # Metrica processes an upload for up to two hours: its status is read until final.
        "name": "Офлайн-конверсии Метрики: статус загрузок",
        "task": "reports.tasks.metrica_uploads_poll_task",
        "every_seconds": 1800,
    },
]
