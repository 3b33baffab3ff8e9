"""Writes and business rules of the clients app; every entry point (admin, API, CLI) calls these."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from agency.audit import audit_log

from .ingest import BatchError, IngestResult, RowError, ingest_frames, read_csv_frames
from .models import ApiKey, Client, ImportJob, Tier
from .selectors import API_KEY_PREFIX, api_key_hash

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya",
    }
)  # fmt: skip


def client_slug_for(name: str) -> str:
    """A unique latin slug for a client name (Cyrillic transliterated)."""
    base = slugify(name.lower().translate(_TRANSLIT))[:50] or "client"
    slug, n = base, 2
    while Client.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def client_create(
    *,
    name: str,
    tier_code: str,
    slug: str | None = None,
    actor: Any = None,
    source: str = "cli",
    **fields: Any,
) -> Client:
    try:
        tier = Tier.objects.get(code=tier_code)
    except Tier.DoesNotExist as exc:
        codes = ", ".join(Tier.objects.values_list("code", flat=True))
        raise ValueError(f"unknown tier {tier_code!r}; choose one of: {codes}") from exc
    client = Client(
        name=name,
        slug=slug or client_slug_for(name),
        tier=tier,
        webhook_secret=secrets.token_urlsafe(24),
        **fields,
    )
    client.full_clean()
    with transaction.atomic():
        client.save()
        audit_log(action="client_created", source=source, actor=actor, client=client, obj=client)
    return client


def api_key_create(
    *,
    client: Client,
    name: str = "",
    scopes: list[str] | None = None,
    actor: Any = None,
    source: str = "cli",
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored (only its hash)."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            client=client,
            name=name,
            prefix=prefix,
            hashed_secret=api_key_hash(secret),
            scopes=scopes if scopes is not None else [ApiKey.Scope.READ, ApiKey.Scope.WRITE],
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_log(action="api_key_created", source=source, actor=actor, client=client, obj=api_key)
    return api_key, f"{API_KEY_PREFIX}_{prefix}_{secret}"


def api_key_revoke(*, api_key: ApiKey, actor: Any = None, source: str = "admin") -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_log(
            action="api_key_revoked", source=source, actor=actor, client=api_key.client, obj=api_key
        )
    return api_key


# --------------------------------------------------------------------------------------------
# CSV import


class ErrorReport:
    """Rejected rows as CSV (row, field, reason, value), written as they come."""

    HEADER = ("row", "field", "reason", "value")

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.writer.writerow(self.HEADER)
        self.count = 0

    def add(self, error: RowError) -> None:
        self.writer.writerow((error.row, error.field, error.reason, error.value))
        self.count += 1

    def content(self) -> bytes:
        # utf-8 with BOM so that Excel opens Cyrillic correctly.
        return self.buffer.getvalue().encode("utf-8-sig")


def csv_import(
    *,
    client: Client,
    kind: str,
    file: Any,
    delimiter: str = ",",
    encoding: str = "utf-8",
    partial: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[RowError], None] | None = None,
) -> IngestResult:
    """Stream a CSV file into the client's base (validated, staged, merged in one transaction)."""
    columns, frames = read_csv_frames(file, kind=kind, delimiter=delimiter, encoding=encoding)
    return ingest_frames(
        client=client,
        kind=kind,
        columns=columns,
        frames=frames,
        partial=partial,
        on_error=on_error,
        on_progress=on_progress,
    )


def count_csv_rows(handle: Any) -> int:
    """Data rows of a binary file (lines minus the header), for progress; rewinds the file.
    Quoted newlines may make it overcount slightly."""
    lines = 0
    last = b"\n"
    while chunk := handle.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    handle.seek(0)
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def import_job_run(*, job: ImportJob, progress_every: int = 50_000) -> ImportJob:
    """Run an uploaded ImportJob, keeping its progress and error report up to date."""
    claimed = (
        ImportJob.objects.for_client(job.client_id)
        .filter(pk=job.pk, status=ImportJob.Status.PENDING)
        .update(status=ImportJob.Status.RUNNING, started_at=timezone.now())
    )
    if not claimed:
        job.refresh_from_db()
        return job  # already run, or running elsewhere: a second delivery does nothing
    job.refresh_from_db()
    report = ErrorReport()
    pending = 0

    def on_progress(rows: int) -> None:
        nonlocal pending
        pending += rows
        if pending >= progress_every:
            ImportJob.objects.for_client(job.client_id).filter(pk=job.pk).update(
                rows_processed=F("rows_processed") + pending
            )
            pending = 0

    try:
        with job.file.open("rb") as handle:
            total = count_csv_rows(handle)
            ImportJob.objects.for_client(job.client_id).filter(pk=job.pk).update(rows_total=total)
            result = csv_import(
                client=job.client,
                kind=job.kind,
                # The underlying binary file: pandas reads Django's File wrapper as UTF-8 text
                # whatever the encoding.
                file=getattr(handle, "file", handle),
                delimiter=job.delimiter,
                encoding=job.encoding,
                partial=job.partial,
                on_progress=on_progress,
                on_error=report.add,
            )
    except BatchError as exc:
        job.status = ImportJob.Status.FAILED
        job.error_message = str(exc)
    except Exception as exc:
        job.status = ImportJob.Status.FAILED
        job.error_message = f"{type(exc).__name__}: {exc}"
        raise
    else:
        job.status = ImportJob.Status.SUCCEEDED if result.committed else ImportJob.Status.REJECTED
        job.rows_ok = result.ok if result.committed else 0
        job.rows_rejected = result.rejected
        job.rows_created = result.created
        job.rows_updated = result.updated
        if not result.committed:
            job.error_message = (
                f"{result.rejected} строк с ошибками; файл не загружен. Исправьте строки из отчёта "
                "или включите «принять корректные строки»."
            )
    finally:
        job.rows_processed = (
            ImportJob.objects.for_client(job.client_id).get(pk=job.pk).rows_processed
        )
        job.rows_processed += pending
        job.finished_at = timezone.now()
        if report.count:
            job.error_report.save(
                f"import-{job.pk}-errors.csv", ContentFile(report.content()), save=False
            )
        job.save(
            update_fields=[
                "status",
                "error_message",
                "rows_ok",
                "rows_rejected",
                "rows_created",
                "rows_updated",
                "rows_processed",
                "finished_at",
                "error_report",
            ]
        )
        audit_log(
            action="csv_import",
            source="admin",
            actor=job.created_by,
            client=job.client_id,
            obj=job,
            details={
                "kind": job.kind,
                "status": job.status,
                "ok": job.rows_ok,
                "rejected": job.rows_rejected,
            },
        )
    return job


def import_jobs_recover(*, now=None, lost_after: timedelta = timedelta(minutes=10)) -> list[int]:
    """Jobs to send to a worker again: pending ones whose message was lost (a broker restart)
    and running ones whose worker died (older than the task time limit; their transaction was
    rolled back, so a rerun starts clean). Returns the ids, now pending again."""
    now = now or timezone.now()
    jobs = ImportJob.objects.unscoped()
    dead_before = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) - timedelta(minutes=1)
    jobs.filter(status=ImportJob.Status.RUNNING, started_at__lt=dead_before).update(
        status=ImportJob.Status.PENDING, started_at=None, rows_processed=0
    )
    return list(
        jobs.filter(status=ImportJob.Status.PENDING, created_at__lt=now - lost_after)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
