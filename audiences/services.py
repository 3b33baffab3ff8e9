"""Destinations and audiences: creation and changes with their rules, the beat schedule of each
audience, and sync runs (creation; execution is in ``audiences.sync``).

Every entry point (admin, API, commands, demo) calls these, so the rules hold everywhere:
credentials are only ever stored encrypted; Yandex Audiences takes SHA-256 only, VK Ads and
myTarget MD5 or plain; a destination's data recipient is its platform's operator, in the
operator's country (``PLATFORM_COUNTRY``; the cross-border guard reads the recipient), and its
platform's address is deployment configuration, never an argument here; an audience and its
segments belong to the destination's client; each audience has exactly one django-celery-beat
PeriodicTask that follows its schedule and active flag.

Besides its schedule an audience syncs when it is created (at once), after a deferred run (the
platform was still processing: retried every few minutes, backing off, at most
:data:`DEFERRED_RETRIES` times) and after withdrawals of people it may hold (within the hour,
many withdrawals in one sync): :func:`audience_sync_want` marks the audience, the beat task
``audience_syncs_wanted_task`` starts the run when due (:func:`audience_syncs_wanted_request`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from agency.audit import audit_log
from agency.audit import audit_object as _audit
from agency.crypto import secret_decrypt, secret_encrypt, secret_rotate
from agency.errors import ServiceError
from agency.i18n import site_language
from agency.jobs import ACTIVE_STATES, enqueue_after_commit, job_audit_source
from agency.recovery import job_recover
from clients.models import Client, Customer
from clients.tiers import tier_require
from consent.models import DataRecipient
from consent.purposes import AUDIENCE_PURPOSE
from segments.models import Segment, SegmentMembership

from .models import HOLDOUT_MAX_PERCENT, PLATFORM_COUNTRY, Audience, Destination, SyncRun

SCHEDULED_TASK = "audiences.tasks.audience_scheduled_sync_task"
ACTIVE_RUN_STATUSES = ACTIVE_STATES

# Syncs before the schedule (the module docstring); the run's source says why.
NEW_SOURCE = "created"  # the first sync of a new audience
RETRY_SOURCE = "retry"  # the retry of a deferred run
WITHDRAWAL_SOURCE = "withdrawal"  # people who withdrew leave the platform
HOLDOUT_SOURCE = "holdout"  # a control group started: its people leave the platform
DEFERRED_RETRY_FIRST = timedelta(minutes=5)  # then 10, 20, 40 minutes, then every hour
DEFERRED_RETRY_LONGEST = timedelta(hours=1)
DEFERRED_RETRIES = 24  # about a day of retries; then the schedule takes over
WITHDRAWAL_SYNC_DELAY = timedelta(minutes=10)  # the withdrawals of these minutes go together
WITHDRAWAL_SYNC_SPACING = timedelta(minutes=45)  # from the audience's previous run
SYNC_WANTED_LABELS = {
    NEW_SOURCE: "первая синхронизация новой аудитории",
    RETRY_SOURCE: "повтор отложенной синхронизации",
    WITHDRAWAL_SOURCE: "после отзыва согласий",
    HOLDOUT_SOURCE: "начат тест с контрольной группой",
}

REQUIRED_CREDENTIALS = {
    Destination.Platform.YANDEX_AUDIENCES: ("token",),
    Destination.Platform.VK_ADS: ("client_id", "client_secret"),
    Destination.Platform.MYTARGET: ("client_id", "client_secret"),
}
ALLOWED_HASHING = {
    Destination.Platform.YANDEX_AUDIENCES: (Destination.Hashing.SHA256,),
    Destination.Platform.VK_ADS: (Destination.Hashing.MD5, Destination.Hashing.PLAIN),
    Destination.Platform.MYTARGET: (Destination.Hashing.MD5, Destination.Hashing.PLAIN),
}
DEFAULT_HASHING = {
    Destination.Platform.YANDEX_AUDIENCES: Destination.Hashing.SHA256,
    Destination.Platform.VK_ADS: Destination.Hashing.MD5,
    Destination.Platform.MYTARGET: Destination.Hashing.MD5,
}
RECIPIENT_LEGAL_NAMES = {
    Destination.Platform.YANDEX_AUDIENCES: "ООО «Яндекс»",
    Destination.Platform.VK_ADS: "ООО «ВК»",
    Destination.Platform.MYTARGET: "ООО «ВК»",
}


class AudienceError(ServiceError):
    """A rule refused the change; ``field`` names the input at fault, when there is one. A
    tier's refusal (code ``tier_*``) is 403, like ``TierLimitError``; the rest 400."""

    def __init__(self, code: str, message: str, *, field: str | None = None):
        status = 403 if code.startswith("tier_") else None
        super().__init__(code, message, field=field, status=status)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "field": self.field}  # the API's body always had it


# --------------------------------------------------------------------------------------------
# Destinations


def _check_destination(platform: str, hashing: str) -> None:
    if platform not in Destination.Platform.values:
        raise AudienceError(
            "invalid_platform",
            _("неизвестная платформа: %(platform)s") % {"platform": platform},
            field="platform",
        )
    if hashing not in ALLOWED_HASHING[platform]:
        allowed = ", ".join(ALLOWED_HASHING[platform])
        raise AudienceError(
            "invalid_hashing",
            _("%(platform)s принимает хеширование: %(allowed)s")
            % {"platform": Destination.Platform(platform).label, "allowed": allowed},
            field="hashing",
        )


def _check_credentials(platform: str, credentials: dict[str, Any]) -> dict[str, str]:
    if not isinstance(credentials, dict):
        raise AudienceError(
            "invalid_credentials", _("учётные данные — объект"), field="credentials"
        )
    missing = [key for key in REQUIRED_CREDENTIALS[platform] if not credentials.get(key)]
    if missing:
        raise AudienceError(
            "invalid_credentials",
            _("не хватает учётных данных: %(missing)s") % {"missing": ", ".join(missing)},
            field="credentials",
        )
    return {key: str(value) for key, value in credentials.items() if value not in (None, "")}


@transaction.atomic
def destination_create(
    *,
    client: Client,
    name: str,
    platform: str,
    credentials: dict[str, Any],
    hashing: str | None = None,
    is_active: bool = True,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> Destination:
    """Connect an ad cabinet (credentials stored encrypted, its platform's operator as the data
    recipient, in the operator's country); audited (never the credentials)."""
    hashing = hashing or DEFAULT_HASHING.get(platform, "")
    _check_destination(platform, hashing)
    country = PLATFORM_COUNTRY[platform]
    credentials = _check_credentials(platform, credentials)
    if Destination.objects.for_client(client).filter(name=name).exists():
        raise AudienceError(
            "name_taken", _("кабинет «%(name)s» уже есть") % {"name": name}, field="name"
        )
    with site_language():  # a stored record: in the site's language
        recipient_name = f"{Destination.Platform(platform).label}: {name}"[:200]
    recipient = DataRecipient.objects.create(
        client=client,
        name=recipient_name,
        legal_name=RECIPIENT_LEGAL_NAMES[platform],
        kind=DataRecipient.Kind.AD_PLATFORM,
        country=country,
    )
    destination = Destination.objects.create(
        client=client,
        name=name,
        platform=platform,
        hashing=hashing,
        is_active=is_active,
        recipient=recipient,
        credentials_encrypted=secret_encrypt(credentials),
    )
    _audit(
        "destination_created",
        destination,
        actor=actor,
        source=source,
        ip=ip,
        details={"platform": platform, "hashing": hashing, "country": country},
    )
    return destination


@transaction.atomic
def destination_update(
    *,
    destination: Destination,
    credentials: dict[str, Any] | None = None,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
    **changes: Any,
) -> Destination:
    """Change fields; new credentials replace the stored ones (and drop the cached token).
    Audited with the names of the changed fields (never the credentials)."""
    allowed = {"name", "hashing", "is_active"}
    unknown = set(changes) - allowed
    if unknown:
        names = sorted(unknown)
        raise AudienceError(
            "invalid_field",
            _("нельзя изменить: %(fields)s") % {"fields": ", ".join(names)},
            field=names[0],
        )
    for key, value in changes.items():
        setattr(destination, key, value)
    try:
        _check_destination(destination.platform, destination.hashing)
    except AudienceError:
        destination.refresh_from_db()  # the caller's instance is left as stored
        raise
    if (
        "name" in changes
        and Destination.objects.for_client(destination.client_id)
        .filter(name=destination.name)
        .exclude(pk=destination.pk)
        .exists()
    ):
        message = _("кабинет «%(name)s» уже есть") % {"name": destination.name}
        raise AudienceError("name_taken", message, field="name")
    fields = list(changes)
    if credentials is not None:
        destination.credentials_encrypted = secret_encrypt(
            _check_credentials(destination.platform, credentials)
        )
        destination.token_encrypted = ""
        destination.token_expires_at = None
        fields += ["credentials_encrypted", "token_encrypted", "token_expires_at"]
    destination.save(update_fields=fields or None)
    if "is_active" in changes:
        for audience in Audience.objects.for_client(destination.client_id).filter(
            destination=destination
        ):
            audience_schedule_sync(audience)
    _audit(
        "destination_updated",
        destination,
        actor=actor,
        source=source,
        ip=ip,
        details={"fields": sorted(changes), "credentials_replaced": credentials is not None},
    )
    return destination


def destination_credentials(destination: Destination) -> dict[str, str]:
    return secret_decrypt(destination.credentials_encrypted)


def credentials_rotate() -> int:
    """Re-encrypt every destination's secrets with the newest key; returns how many."""
    count = 0
    for destination in Destination.objects.unscoped().iterator():
        destination.credentials_encrypted = secret_rotate(destination.credentials_encrypted)
        destination.token_encrypted = secret_rotate(destination.token_encrypted)
        Destination.objects.for_client(destination.client_id).filter(pk=destination.pk).update(
            credentials_encrypted=destination.credentials_encrypted,
            token_encrypted=destination.token_encrypted,
        )
        count += 1
    return count


# --------------------------------------------------------------------------------------------
# Audiences


def _check_audience(audience: Audience, suppression: list[Segment] | None) -> None:
    client_id = audience.client_id
    if audience.segment.client_id != client_id:
        raise AudienceError("segment_not_found", _("сегмент не найден"), field="segment")
    if audience.destination.client_id != client_id:
        raise AudienceError("destination_not_found", _("кабинет не найден"), field="destination")
    if audience.segment.kind == Segment.Kind.SUPPRESSION:
        raise AudienceError(
            "invalid_segment",
            _("сегмент-исключение нельзя выгружать как аудиторию; укажите его в исключениях"),
            field="segment",
        )
    if not 1 <= int(audience.lookalike_value) <= 5:
        raise AudienceError(
            "invalid_lookalike_value",
            _("точность look-alike — от 1 до 5"),
            field="lookalike_value",
        )
    if not 1 <= int(audience.sync_every_days) <= 60:
        raise AudienceError(
            "invalid_schedule",
            _("период обновления — от 1 до 60 дней"),
            field="sync_every_days",
        )
    for segment in suppression or []:
        if segment.client_id != client_id:
            raise AudienceError(
                "segment_not_found", _("сегмент не найден"), field="suppression_segments"
            )
        if segment.pk == audience.segment_id:
            raise AudienceError(
                "invalid_suppression",
                _("сегмент аудитории не может быть своим исключением"),
                field="suppression_segments",
            )


@transaction.atomic
def audience_create(
    *,
    client: Client,
    name: str,
    segment: Segment,
    destination: Destination,
    suppression_segments: list[Segment] | None = None,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
    **fields: Any,
) -> Audience:
    """A new audience of a segment in a cabinet, with its beat schedule; audited. Its first
    sync is wanted at once (:func:`audience_sync_want`) and sent to a worker after commit."""
    audience = Audience(
        client=client, name=name, segment=segment, destination=destination, **fields
    )
    _check_audience(audience, suppression_segments)
    _check_holdout(audience, was_percent=0, was_unit=audience.holdout_unit)
    if Audience.objects.for_client(client).filter(name=name).exists():
        raise AudienceError(
            "name_taken", _("аудитория «%(name)s» уже есть") % {"name": name}, field="name"
        )
    if audience.is_active and destination.is_active:
        # The first sync at once, not at the first tick of the schedule (days away).
        audience.sync_wanted_at, audience.sync_wanted_source = timezone.now(), NEW_SOURCE
    if audience.holdout_percent:
        audience.holdout_started_at = timezone.now()
    audience.save()
    _suppression_set(audience, suppression_segments or [])
    audience_schedule_sync(audience)
    _audit(
        "audience_created",
        audience,
        actor=actor,
        source=source,
        ip=ip,
        details={
            "segment": audience.segment_id,
            "destination": audience.destination_id,
            "purpose": audience.purpose,
            "suppression_segments": [s.pk for s in suppression_segments or []],
            "holdout": [audience.holdout_percent, audience.holdout_unit],
        },
    )
    if audience.sync_wanted_at is not None:
        # Sent at once: the worker starts the first sync as soon as it is free (and beat's
        # every minute, should the message be lost).
        from .tasks import audience_syncs_wanted_task

        enqueue_after_commit(audience_syncs_wanted_task)
    return audience


@transaction.atomic
def audience_update(
    *,
    audience: Audience,
    suppression_segments: list[Segment] | None = None,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
    **changes: Any,
) -> Audience:
    """Change an audience; a new segment or identifiers start the remote audience afresh on the
    next sync (a remote audience holds one kind of data). Audited with the changed fields."""
    allowed = {
        "name",
        "segment",
        "purpose",
        "identifiers",
        "lookalike_value",
        "sync_every_days",
        "is_active",
        "direct_retargeting_condition_id",
        "holdout_percent",
        "holdout_unit",
    }
    unknown = set(changes) - allowed
    if unknown:
        names = ", ".join(sorted(unknown))
        raise AudienceError("invalid_field", _("нельзя изменить: %(fields)s") % {"fields": names})
    restart = any(
        key in changes and getattr(audience, key) != changes[key]
        for key in ("segment", "identifiers", "purpose")
    )
    was_percent, was_unit = audience.holdout_percent, audience.holdout_unit
    for key, value in changes.items():
        setattr(audience, key, value)
    try:
        _check_audience(audience, suppression_segments)
        _check_holdout(audience, was_percent=was_percent, was_unit=was_unit)
    except ServiceError:
        audience.refresh_from_db()  # the caller's instance is left as stored
        raise
    if (
        Audience.objects.for_client(audience.client_id)
        .filter(name=audience.name)
        .exclude(pk=audience.pk)
        .exists()
    ):
        raise AudienceError(
            "name_taken", _("аудитория «%(name)s» уже есть") % {"name": audience.name}, field="name"
        )
    if restart:
        audience.remote = {}
        audience.confirmed_snapshot = None
        audience.state = Audience.State.NEW
    now = timezone.now()
    holdout = _holdout_transition(audience, was_percent=was_percent, now=now)
    if restart and audience.holdout_percent and not holdout:
        # Another segment is another population: the test starts again from now.
        audience.holdout_started_at, holdout = now, "restarted"
    audience.save()
    if suppression_segments is not None:
        _suppression_set(audience, suppression_segments)
    audience_schedule_sync(audience)
    if holdout == "started" and audience.is_active:
        # The held-out people leave the platform at once, not at the next scheduled sync.
        from .tasks import audience_syncs_wanted_task

        enqueue_after_commit(audience_syncs_wanted_task)
    fields = sorted(changes)
    if suppression_segments is not None:
        fields.append("suppression_segments")
    _audit(
        "audience_updated",
        audience,
        actor=actor,
        source=source,
        ip=ip,
        details={
            "fields": fields,
            "restarted": restart,
            **({"holdout": holdout} if holdout else {}),
        },
    )
    return audience


def _check_holdout(audience: Audience, *, was_percent: int, was_unit: str) -> None:
    """The holdout rules: a share of 0..50 %, on a retargeting audience only; the geo split
    (unit ``region``) on a tier with incrementality tests (Enterprise); and a running test's
    share and unit fixed: a change would mix two splits in one measurement, so the test is
    stopped first (share 0) and started afresh."""
    percent, unit = audience.holdout_percent, audience.holdout_unit
    if not isinstance(percent, int) or not 0 <= percent <= HOLDOUT_MAX_PERCENT:
        raise AudienceError(
            "invalid_holdout_percent",
            _("контрольная группа — от 0 до %(maximum)s %%") % {"maximum": HOLDOUT_MAX_PERCENT},
            field="holdout_percent",
        )
    if unit not in Audience.HoldoutUnit.values:
        raise AudienceError(
            "invalid_holdout_unit",
            _("единица контрольной группы — человек или регион"),
            field="holdout_unit",
        )
    if percent and was_percent and (percent != was_percent or unit != was_unit):
        raise AudienceError(
            "holdout_running",
            _(
                "тест с контрольной группой идёт (%(percent)s %%): долю и единицу не изменить, "
                "иначе измерение смешает два разбиения. Остановите тест (доля 0) и начните новый."
            )
            % {"percent": was_percent},
            field="holdout_percent",
        )
    if not percent:
        return
    if audience.purpose != Audience.Purpose.RETARGETING:
        raise AudienceError(
            "invalid_holdout_purpose",
            _("контрольная группа бывает только у аудитории ретаргетинга"),
            field="holdout_percent",
        )
    if unit == Audience.HoldoutUnit.REGION:
        tier_require(
            client=audience.client,
            feature="incrementality",
            context=_("Гео-тест исключает из выгрузки целые регионы."),
        )


def _holdout_transition(audience: Audience, *, was_percent: int, now: datetime) -> str:
    """Start or stop the holdout's clock; the change, for the audit ('' when none)."""
    if audience.holdout_percent and not was_percent:
        audience.holdout_started_at = now
        audience.sync_wanted_at, audience.sync_wanted_source = now, HOLDOUT_SOURCE
        return "started"
    if was_percent and not audience.holdout_percent:
        audience.holdout_started_at = None
        return "stopped"
    return ""


def _suppression_set(audience: Audience, segments: list[Segment]) -> None:
    """Through the link table: the related manager would query segments without a scope."""
    links = Audience.suppression_segments.through.objects
    links.filter(audience_id=audience.pk).delete()
    links.bulk_create(
        [links.model(audience_id=audience.pk, segment_id=segment.pk) for segment in segments]
    )


def audience_schedule_sync(audience: Audience) -> PeriodicTask:
    """Create or update the audience's beat entry: every ``sync_every_days`` days, enabled
    while the audience and its destination are active. Staff may edit it in the beat admin."""
    interval, _created = IntervalSchedule.objects.get_or_create(
        every=audience.sync_every_days, period=IntervalSchedule.DAYS
    )
    enabled = audience.is_active and audience.destination.is_active
    values = {
        "name": f"Синхронизация аудитории #{audience.pk} «{audience.name}»"[:200],
        "task": SCHEDULED_TASK,
        "interval": interval,
        "crontab": None,
        "args": json.dumps([audience.pk]),
        "enabled": enabled,
        "description": f"client={audience.client_id}",
    }
    task = audience.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(**values)
        Audience.objects.for_client(audience.client_id).filter(pk=audience.pk).update(
            periodic_task=task
        )
        audience.periodic_task = task
    else:
        for key, value in values.items():
            setattr(task, key, value)
        task.save()
    return task


def audience_next_sync(audience: Audience, now: datetime | None = None) -> datetime | None:
    task = audience.periodic_task
    if task is None or not task.enabled or task.interval is None:
        return None
    now = now or timezone.now()
    last = task.last_run_at or audience.last_synced_at or audience.created_at
    due = max(last + task.interval.schedule.run_every, now)
    if audience.sync_wanted_at is not None:  # a sync before the schedule
        due = min(due, max(audience.sync_wanted_at, now))
    return due


# --------------------------------------------------------------------------------------------
# Sync runs


def audience_sync_request(
    *,
    audience: Audience,
    actor: Any = None,
    source: str,
    ip: str | None = None,
    enqueue: bool = True,
) -> tuple[SyncRun, bool]:
    """A pending sync of the audience, sent to a worker after commit (``enqueue=False``: the
    caller executes it in the foreground, as ``sync_audience`` does), or the run already pending
    or running (never two at once). A new run satisfies the sync wanted of the audience, if any
    (its snapshot is built afterwards). Every request is audited. Returns (run, created)."""
    with transaction.atomic():
        Audience.objects.for_client(audience.client_id).select_for_update().filter(
            pk=audience.pk
        ).first()
        run = (
            SyncRun.objects.for_client(audience.client_id)
            .filter(audience=audience, status__in=ACTIVE_RUN_STATUSES)
            .order_by("created_at")
            .first()
        )
        created = run is None
        if created:
            run = SyncRun.objects.create(
                client_id=audience.client_id, audience=audience, source=source
            )
            Audience.objects.for_client(audience.client_id).filter(pk=audience.pk).exclude(
                sync_wanted_at=None
            ).update(sync_wanted_at=None, sync_wanted_source="")
        audit_log(
            action="audience_sync_requested",
            source=job_audit_source(source),
            actor=actor,
            client=audience.client_id,
            obj=audience,
            details={"run": run.pk, "created": created, "source": source},
            ip=ip,
        )
        if created and enqueue:
            from .tasks import audience_sync_task

            enqueue_after_commit(audience_sync_task, run.pk)
    return run, created


def audience_sync_want(audiences: QuerySet, *, at: datetime, source: str) -> int:
    """Mark: a sync of these audiences is wanted at ``at`` (``source`` names why); an earlier
    mark stays. The beat task starts it when due (:func:`audience_syncs_wanted_request`).
    Returns how many audiences were marked."""
    return audiences.filter(Q(sync_wanted_at=None) | Q(sync_wanted_at__gt=at)).update(
        sync_wanted_at=at, sync_wanted_source=source
    )


def audience_syncs_wanted_request(*, now: datetime | None = None) -> list[int]:
    """Beat: a run for every active audience whose wanted sync is due, unless one is under way
    (the mark then waits for the next beat: the run under way may have built its snapshot
    before the mark). Returns the ids of the runs created."""
    now = now or timezone.now()
    due = (
        Audience.objects.unscoped()
        .filter(sync_wanted_at__lte=now, is_active=True, destination__is_active=True)
        .order_by("sync_wanted_at", "pk")
    )
    created_ids = []
    for audience in due:
        run, created = audience_sync_request(
            audience=audience, source=audience.sync_wanted_source or RETRY_SOURCE
        )
        if created:
            created_ids.append(run.pk)
    return created_ids


def deferred_retry_delay(retry: int) -> timedelta:
    """The wait before retry number ``retry`` (1, 2, ...) of a deferred sync: 5, 10, 20, 40
    minutes, then an hour."""
    return min(DEFERRED_RETRY_FIRST * 2 ** (retry - 1), DEFERRED_RETRY_LONGEST)


def deferred_retry_plan(run: SyncRun, *, now: datetime) -> tuple[int, datetime | None]:
    """For a run ending deferred: which retry comes next (the runs of the audience deferred in
    a row, this one included) and when, or None once :data:`DEFERRED_RETRIES` are spent."""
    statuses = (
        SyncRun.objects.for_client(run.client_id)
        .filter(audience_id=run.audience_id, finished_at__isnull=False)
        .exclude(pk=run.pk)
        .order_by("-created_at", "-pk")
        .values_list("status", flat=True)[:DEFERRED_RETRIES]
    )
    retry = 1
    for status in statuses:
        if status != SyncRun.Status.DEFERRED:
            break
        retry += 1
    if retry > DEFERRED_RETRIES:
        return retry, None
    return retry, now + deferred_retry_delay(retry)


def audiences_withdrawal_sync(*, customers: Iterable[Customer], purpose: Any) -> int:
    """Withdrawal hook (``consent.hooks``, in the withdrawal's transaction): the audiences that
    may hold these people get a sync within the hour, one for many withdrawals.

    Which audiences: those whose segment has the person, or a customer record sharing their
    email or phone (a shared value is withheld from then on: ``audiences.snapshots``), as a
    member now or since the audience's last sync (the platform may hold them still). When: at
    least :data:`WITHDRAWAL_SYNC_DELAY` from now, so that withdrawals arriving together share
    the sync, and :data:`WITHDRAWAL_SYNC_SPACING` after the audience's previous run; an
    earlier mark stays. Returns how many audiences were marked."""
    if getattr(purpose, "code", purpose) != AUDIENCE_PURPOSE:
        return 0
    customers = list(customers)
    if not customers:
        return 0
    client_id = customers[0].client_id
    emails = {c.email for c in customers if c.email}
    phones = {c.phone for c in customers if c.phone}
    holders = Customer.objects.for_client(client_id).filter(
        Q(pk__in=[c.pk for c in customers]) | Q(email__in=emails) | Q(phone__in=phones)
    )
    held = SegmentMembership.objects.for_client(client_id).filter(
        Q(left_at=None) | Q(left_at__gt=OuterRef("last_synced_at")),
        segment_id=OuterRef("segment_id"),
        customer_id__in=holders.values("pk"),
    )
    previous = (
        SyncRun.objects.for_client(client_id)
        .filter(audience_id=OuterRef("pk"))
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    audiences = (
        Audience.objects.for_client(client_id)
        .filter(Exists(held))
        .annotate(previous_run=Subquery(previous))
        .values_list("pk", "previous_run")
    )
    now = timezone.now()
    marked = 0
    for audience_id, previous_run in audiences:
        at = now + WITHDRAWAL_SYNC_DELAY
        if previous_run is not None:
            at = max(at, previous_run + WITHDRAWAL_SYNC_SPACING)
        marked += audience_sync_want(
            Audience.objects.for_client(client_id).filter(pk=audience_id),
            at=at,
            source=WITHDRAWAL_SOURCE,
        )
    return marked


def sync_runs_recover(now: datetime | None = None) -> list[int]:
    """Runs a dead worker left "running" (no heartbeat) go back to pending (they resume from
    their snapshot); returns pending runs whose message was lost, to send again."""
    return job_recover(SyncRun, now=now)


# --------------------------------------------------------------------------------------------
# Value-based bidding


def bid_modifiers_for_client(*, client: Client, exclude_bottom: bool = False) -> list:
    """Recommended Yandex Direct bid modifiers for the client's Yandex audiences
    (``audiences.bidding``). Value-based bidding is a tier feature (``clients.tiers``)."""
    from segments.models import CustomerScore, SegmentMembership

    from .bidding import recommend

    tier_require(client=client, feature="value_bidding")
    scores = CustomerScore.objects.filter(client_id=client.pk, predicted_clv__isnull=False)
    client_clv = [float(v) for v in scores.values_list("predicted_clv", flat=True).iterator()]
    items = []
    audiences = (
        Audience.objects.for_client(client)
        .filter(destination__platform=Destination.Platform.YANDEX_AUDIENCES)
        .select_related("segment")
        .order_by("name")
    )
    for audience in audiences:
        members = SegmentMembership.objects.for_client(client).filter(
            segment_id=audience.segment_id, left_at__isnull=True
        )
        figures = scores.filter(customer_id__in=members.values("customer_id")).aggregate(
            mean=Avg("predicted_clv"), n=Count("pk")
        )
        items.append(
            {
                "id": audience.pk,
                "name": audience.name,
                "segment": audience.segment.name,
                "purpose": audience.purpose,
                "members": audience.segment.size,
                "mean_clv": figures["mean"] if figures["n"] else None,
                "retargeting_condition_id": audience.direct_retargeting_condition_id,
                "remote_segment_id": (audience.remote or {}).get("segment_id"),
            }
        )
    return recommend(items, client_clv, exclude_bottom=exclude_bottom)
