"""What audiences holds about a person, for consent's access archive and erasure.

Registered in ``AudiencesConfig.ready()`` (:func:`register`) with :mod:`consent.hooks`. What
audiences holds about a person is the identifier values a sync sent to an ad platform, kept in
the snapshot each remote object holds (:class:`AudienceSnapshotChunk`); runs keep only counts.

Access archive, section ``audience_exports``: one row per audience and identifier kind the
platform holds for the person now: the audience, its cabinet, platform and the recipient, when
that data was sent, the kind, the hashing and the value sent (what the platform received). The
person's identifiers are put in each destination's format and hashing by the same SQL as the
snapshot builds (``audiences.hashing``) and looked up in the held snapshots. Exports that a
later sync has removed are not listed: no per-person record of them is kept.

Erasure: the person leaves every platform at the next sync, exactly as after a withdrawal, and
afterwards no stored snapshot holds their values.

Why through the next sync rather than by editing the stored snapshots at once: the snapshot a
remote object holds is the only record of what the platform has, and the next sync removes
exactly the difference between it and a new snapshot (which leaves erased customers out,
``held_back_erased``). Scrubbing the person from the held snapshot first would hide them from
that difference and leave them on the platform for good; keeping a separate removal list
instead would be a second copy of the hashes and a second path through both platform flows. So:

1. at erasure (:func:`audiences_erase`, in the erasure transaction) every audience that may
   hold the person gets a sync: those whose stored snapshots hold the person's values, those
   whose segment has them as a member (the identifier sent may since have changed) and those
   with a sync under way. The client's audience rows are locked first, so that every run
   either is seen here or is created after the erasure commits (``audience_sync_request`` locks the
   audience row) and builds a snapshot without the person. Without a run under way a new run
   is queued after commit; with one (its snapshot may predate the erasure) a follow-up sync is
   queued that starts when it ends (``audiences.tasks.audience_sync_after_task``);
2. that sync removes the person on the platform (Yandex ``modify_data`` subtraction or
   replace, VK Ads ``base=-N`` lists), the remote objects then hold the new snapshot, and the
   sync's prune drops every snapshot no remote object holds (``audiences.sync``): nothing
   stored holds the values once the platform has removed them.

Until the platform has removed them the held snapshot keeps them, since it is what tells the
next sync to remove them: after a failed sync, a Yandex segment still processing (deferred),
or for an audience or cabinet switched off (no sync is started for it; the erasure's
resolution names it), the next successful sync removes both. A value that another, not erased
customer also has (two customer rows with one email) stays: it is that customer's identifier,
and the erased row no longer holds it to compare (a withdrawal, by contrast, withholds the value
for every record that has it: ``audiences.snapshots``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import QuerySet, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from agency.jobs import enqueue_after_commit
from clients.models import Customer
from consent import hooks
from consent.hooks import ArchiveSection, ErasureStep, ErasureSubject, WithdrawalHook
from integrations.vk_ads import LIST_TYPES
from segments.models import SegmentMembership

from . import tasks
from .hashing import EMAIL, KIND_NAMES, PHONE, hashed_sql, platform_value_sql
from .models import Audience, AudienceSnapshot, AudienceSnapshotChunk, Destination, SyncRun
from .services import ACTIVE_RUN_STATUSES, audience_sync_request, audiences_withdrawal_sync
from .snapshots import audience_kinds

# The identifier values sent to the platforms live in the snapshot chunks (the snapshot row
# holds counts only).
EXPORT_MODELS = ("audiences.AudienceSnapshotChunk",)


def person_values(*, email: str, phone: str, hashing: str, kinds: Iterable[int]) -> dict[int, str]:
    """The values a snapshot holds for a person with these stored identifiers, per kind: the
    platform format and the hashing of ``audiences.hashing``, by the SQL the snapshot builds
    run. Kinds the person has no identifier of are left out."""
    raw = {EMAIL: email or "", PHONE: phone or ""}
    kinds = [kind for kind in kinds if raw[kind].strip()]
    if not kinds:
        return {}
    columns, params = [], []
    for kind in kinds:
        value = platform_value_sql(kind, "CAST(%s AS TEXT)")
        columns += [value, hashed_sql(hashing, value, connection.vendor)]
        params += [raw[kind], raw[kind]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(columns), params)
        row = cursor.fetchone()
    return {kind: row[2 * i + 1] for i, kind in enumerate(kinds) if row[2 * i]}


def chunks_holding(client_id: int, snapshot_ids: Iterable[int], kind: int, value: str) -> QuerySet:
    """Chunks of these snapshots that hold ``value`` as one of their lines."""
    return (
        AudienceSnapshotChunk.objects.filter(
            client_id=client_id, snapshot_id__in=list(snapshot_ids), kind=kind
        )
        .annotate(lines=Concat(Value("\n"), "values", Value("\n"), output_field=TextField()))
        .filter(lines__contains=f"\n{value}\n")
    )


def held_snapshots(audience: Audience) -> dict[int, int]:
    """The snapshot that each identifier kind's remote object holds: what the platform has."""
    remote = audience.remote or {}
    kinds = audience_kinds(audience)
    if audience.destination.platform == Destination.Platform.YANDEX_AUDIENCES:
        held = remote.get("snapshot_id")
        return {kind: held for kind in kinds} if held else {}
    lists = remote.get("lists") or {}
    return {
        kind: lists[LIST_TYPES[kind]]["snapshot_id"] for kind in kinds if LIST_TYPES[kind] in lists
    }


# --------------------------------------------------------------------------------------------
# Access archive


def _sent_at(audience: Audience, snapshot_id: int) -> str | None:
    """When the sync that uploaded the snapshot ended (local time of the client)."""
    runs = SyncRun.objects.for_client(audience.client_id).filter(
        audience=audience, snapshot_id=snapshot_id, finished_at__isnull=False
    )
    when = runs.order_by("-finished_at").values_list("finished_at", flat=True).first()
    if when is None:
        when = (
            AudienceSnapshot.objects.for_client(audience.client_id)
            .filter(pk=snapshot_id)
            .values_list("created_at", flat=True)
            .first()
        )
    return timezone.localtime(when, audience.client.tzinfo).isoformat() if when else None


def exports_section(customer: Customer) -> list[dict[str, Any]]:
    """Which ad platforms hold the person now, through which audience, since which sync, with
    which identifier and the value they received."""
    rows = []
    audiences = (
        Audience.objects.for_client(customer.client_id)
        .select_related("client", "destination", "destination__recipient")
        .order_by("name", "pk")
    )
    for audience in audiences:
        held = held_snapshots(audience)
        if not held:
            continue
        destination = audience.destination
        values = person_values(
            email=customer.email, phone=customer.phone, hashing=destination.hashing, kinds=held
        )
        for kind, value in values.items():
            if not chunks_holding(customer.client_id, [held[kind]], kind, value).exists():
                continue
            rows.append(
                {
                    "audience": audience.name,
                    "purpose": audience.get_purpose_display(),
                    "platform": destination.get_platform_display(),
                    "cabinet": destination.name,
                    "recipient": destination.recipient.legal_name or destination.recipient.name,
                    "country": destination.country,
                    "sent_at": _sent_at(audience, held[kind]),
                    "identifier": KIND_NAMES[kind],
                    "hashing": destination.get_hashing_display(),
                    "value_sent": value,
                }
            )
    return rows


# --------------------------------------------------------------------------------------------
# Erasure


def _holds_person(
    audience: Audience, snapshot_ids: list[int], values: dict[int, str], client_id: int
) -> bool:
    kinds = audience_kinds(audience)
    return bool(snapshot_ids) and any(
        chunks_holding(client_id, snapshot_ids, kind, value).exists()
        for kind, value in values.items()
        if kind in kinds
    )


def _label(audience: Audience) -> str:
    destination = audience.destination
    return f"«{audience.name}» ({destination.get_platform_display()}, кабинет «{destination.name}»)"


def audiences_erase(subject: ErasureSubject) -> str | None:
    """Queue the syncs that take the person off every platform (see the module docstring);
    returns what happens, for the request's resolution."""
    customer = subject.customer
    client_id = customer.client_id
    if not (subject.email.strip() or subject.phone.strip()):
        return None  # nothing of the person can have been sent anywhere
    # Locked first: a run created from now on waits for the erasure to commit (module docstring).
    audiences = list(
        Audience.objects.for_client(client_id)
        .select_for_update(of=("self",))
        .select_related("destination")
        .order_by("pk")
    )
    if not audiences:
        return None
    member_of = set(
        SegmentMembership.objects.for_client(client_id)
        .filter(customer_id=customer.pk, left_at__isnull=True)
        .values_list("segment_id", flat=True)
    )
    under_way: dict[int, SyncRun] = {}
    for run in (
        SyncRun.objects.for_client(client_id)
        .filter(status__in=ACTIVE_RUN_STATUSES)
        .order_by("-created_at")
    ):
        under_way[run.audience_id] = run  # the oldest one wins (audience_sync_request picks it too)
    stored: dict[int, list[int]] = {}
    for audience_id, snapshot_id in AudienceSnapshot.objects.for_client(client_id).values_list(
        "audience_id", "pk"
    ):
        stored.setdefault(audience_id, []).append(snapshot_id)
    values_by_hashing: dict[str, dict[int, str]] = {}
    queued, switched_off = [], []
    for audience in audiences:
        hashing = audience.destination.hashing
        if hashing not in values_by_hashing:
            values_by_hashing[hashing] = person_values(
                email=subject.email, phone=subject.phone, hashing=hashing, kinds=(EMAIL, PHONE)
            )
        holds = audience.segment_id in member_of or _holds_person(
            audience, stored.get(audience.pk, []), values_by_hashing[hashing], client_id
        )
        run = under_way.get(audience.pk)
        if not holds and run is None:
            continue
        if not (audience.is_active and audience.destination.is_active):
            if holds:
                switched_off.append(audience)
            continue
        if run is None:
            run, _ = audience_sync_request(audience=audience, source=tasks.ERASURE_SOURCE)
        else:
            enqueue_after_commit(tasks.audience_sync_after_task, audience.pk, run.pk)
        queued.append(audience)
    lines = []
    if queued:
        lines.append(
            "Рекламные аудитории: субъект удаляется с платформ синхронизацией, запущенной при "
            "удалении (как при отзыве согласия): "
            + ", ".join(_label(a) for a in queued)
            + "; после неё его хеши не хранятся ни в одном снимке аудитории."
        )
    if switched_off:
        lines.append(
            "Аудитории или кабинеты отключены, субъект остаётся на платформе до их следующей "
            "синхронизации: " + ", ".join(_label(a) for a in switched_off) + "."
        )
    return "\n".join(lines) or None


def register() -> None:
    """Register the section, the erasure step and the withdrawal hook with consent
    (``AudiencesConfig.ready()``). Every sync reads consent, so a withdrawn person leaves at the
    next one; the hook makes that sync come within the hour
    (``audiences.services.audiences_withdrawal_sync``)."""
    hooks.register(
        ArchiveSection(
            app="audiences",
            name="audience_exports",
            title="передача рекламным платформам: аудитория, кабинет, получатель, когда "
            "передано, какой идентификатор и в каком виде (значение, полученное платформой)",
            models=EXPORT_MODELS,
            build=exports_section,
        )
    )
    hooks.register(
        ErasureStep(
            app="audiences",
            name="platform_removal",
            models=EXPORT_MODELS,
            run=audiences_erase,
        )
    )
    hooks.register(
        WithdrawalHook(
            app="audiences",
            name="sync_within_the_hour",
            run=lambda *, customer, purpose: audiences_withdrawal_sync(
                customers=[customer], purpose=purpose
            ),
            run_many=audiences_withdrawal_sync,
        )
    )
