"""Kill-the-worker tests of background jobs: the timings they run with and the recovery loop.

Production: a running job beats every ``JOB_HEARTBEAT_SECONDS`` (10 s), is stale after
``JOB_STALE_SECONDS`` (120 s) and the recover tasks run every minute (``config/schedules.py``):
a killed worker's job runs again within stale + one beat, about 3 minutes. The tests run the same
code with short figures (a beat each second, stale after 6 s, the recover task each second) so
that each takes seconds; ``RECOVERY_TEST_HEARTBEAT_SECONDS``, ``RECOVERY_TEST_STALE_SECONDS`` and
``RECOVERY_TEST_BEAT_SECONDS`` set other figures (10, 120 and 60 reproduce production's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime

import psycopg
from django.db import connection
from django.utils import timezone

HEARTBEAT_SECONDS = float(os.environ.get("RECOVERY_TEST_HEARTBEAT_SECONDS", "1"))
STALE_SECONDS = float(os.environ.get("RECOVERY_TEST_STALE_SECONDS", "6"))
BEAT_SECONDS = float(os.environ.get("RECOVERY_TEST_BEAT_SECONDS", "1"))

# Long enough for the recovery (stale, then up to one beat) and a worker's start, whatever the
# figures.
RECOVERY_TIMEOUT = STALE_SECONDS + 2 * BEAT_SECONDS + 60

WORKER_ENV = {
    "JOB_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    "JOB_STALE_SECONDS": str(STALE_SECONDS),
}


def use_test_timings(settings) -> None:
    """This process (which runs the recover tasks) judges staleness as the workers beat."""
    settings.JOB_HEARTBEAT_SECONDS = HEARTBEAT_SECONDS
    settings.JOB_STALE_SECONDS = STALE_SECONDS


@contextmanager
def other_connection():
    """A database connection of its own (autocommit), to hold a lock the worker waits for."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=db["USER"], autocommit=True
    ) as conn:
        yield conn


def waiting_locks(locktype: str) -> int:
    """Lock requests of this type that some backend is waiting for."""
    with other_connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = %s AND NOT granted", [locktype]
        ).fetchone()[0]


def wait_until(condition: Callable[[], bool], seconds: float, what: str, worker=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None:
            assert worker.poll() is None, "the worker died"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def hold_past_stale(job, recover: Callable[[], list[int]]) -> None:
    """While the job's worker is busy (blocked, writing no progress), run the recovery as beat
    would for longer than the stale threshold: the job keeps beating and is never taken."""
    first_beat = job.heartbeat_at
    deadline = time.monotonic() + STALE_SECONDS * 1.5
    while time.monotonic() < deadline:
        assert recover() == [], "a live, beating job was taken for dead"
        time.sleep(min(BEAT_SECONDS, 1))
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("running", 1)
    assert job.heartbeat_at > first_beat, "the heartbeat thread did not beat"


def recover_until_claimed(
    job,
    recover: Callable[[], list[int]],
    killed_at: datetime,
    worker,
    seconds: float = RECOVERY_TIMEOUT,
) -> float:
    """Run the recover task every ``BEAT_SECONDS`` (beat's every minute) from the kill on,
    until another worker has claimed the job under the next attempt; returns the recovery time:
    from the kill to the new claim (the job's ``started_at``)."""
    attempt = job.attempt
    deadline = time.monotonic() + seconds
    next_beat = time.monotonic()
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.attempt > attempt:
            return (job.started_at - killed_at).total_seconds()
        if time.monotonic() >= next_beat:
            recover()
            next_beat += BEAT_SECONDS
        assert worker.poll() is None, "the new worker died"
        time.sleep(0.1)
    raise AssertionError(f"{type(job).__name__} {job.pk} was not recovered in {seconds} s")


def report(kind: str, seconds: float) -> None:
    print(
        f"\n{kind}: worker killed mid-job, running again after {seconds:.1f} s "
        f"(heartbeat {HEARTBEAT_SECONDS:g} s, stale after {STALE_SECONDS:g} s, recovery every "
        f"{BEAT_SECONDS:g} s; production 10 s / 120 s / 60 s: at most ~180 s)"
    )


def kill(worker) -> datetime:
    """SIGKILL the worker process; returns when."""
    worker.kill()
    worker.wait()
    return timezone.now()
