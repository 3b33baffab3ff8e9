"""One audience sync, from the export set to the platform and back into the SyncRun log.

Order of a run (``sync_run_execute``):
1. take the destination's lease (one sync at a time per destination) and claim the run;
2. the cross-border guard (``consent.transfers.transfer_check``), before anything is written;
3. the snapshot: built once per run and kept, so a run interrupted halfway resumes with the
   same membership snapshot (``audiences.snapshots``);
4. the platform flow (:func:`sync_yandex`, :func:`sync_vk`): every remote object is named after
   the audience and the snapshot (``cvm-a<audience>-s<snapshot>``) and looked up by that name
   before it is created, so a repeated or resumed run never uploads twice; remote ids are saved
   the moment the platform returns them;
5. the outcome: counts, remote status, matched %, request ids, the platform's message.

Which snapshot each remote object holds is kept per object in ``Audience.remote`` (the Yandex
segment, each VK users list), and every change is the difference against that snapshot: what
the platform holds is never guessed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, Q
from django.utils import timezone
from django.utils.translation import gettext_noop, ngettext

from agency.crypto import CredentialsUnreadable, secret_decrypt
from agency.i18n import site_language
from agency.jobs import JobLost
from consent.transfers import TransferRefused, transfer_check
from integrations import mytarget, vk_ads
from integrations import vk_ads as vk_api
from integrations import yandex_audiences as yandex_api
from integrations.http import OutcomeUnknown, PlatformError, PlatformHttp, PlatformUnavailable

from .hashing import EMAIL, hasher_for
from .models import Audience, AudienceSnapshot, Destination, SyncRun
from .services import DEFERRED_RETRIES, RETRY_SOURCE, audience_sync_want, deferred_retry_plan
from .snapshots import (
    SnapshotDifference,
    audience_kinds,
    plain_lines,
    snapshot_blocks,
    snapshot_build,
    snapshot_difference,
    yandex_csv,
)
from .vk_tokens import VkTokenCache

logger = logging.getLogger(__name__)

Status = SyncRun.Status
State = Audience.State


COUNT_FIELDS = (
    "members",
    "held_back_erased",
    "held_back_consent",
    "suppressed",
    "held_out",
    "no_identifier",
    "exported",
)


class DestinationBusy(Exception):
    """Another sync holds the destination; the task tries again later."""


@dataclass
class Outcome:
    status: str = Status.SUCCEEDED
    state: str = State.SYNCED
    uploaded: int = 0
    added: int = 0
    removed: int = 0
    remote_status: str = ""
    matched_percent: float | None = None
    messages: list[str] = field(default_factory=list)


@dataclass
class SyncContext:
    run: SyncRun
    audience: Audience
    destination: Destination
    snapshot: AudienceSnapshot
    outcome: Outcome
    progress: Callable[[int, str], None]
    http_options: dict[str, Any]

    @property
    def key(self) -> str:
        return f"cvm-a{self.audience.pk}-s{self.snapshot.pk}"

    def step(self, text: str) -> None:
        self.run.steps = [*self.run.steps, f"{timezone.localtime():%H:%M:%S} {text}"]
        if not self.run.owned_rows().update(steps=self.run.steps):
            raise JobLost(self.run)

    def remote_save(self) -> None:
        """Persist remote ids at once: a run killed after this line will not upload again. Only
        while the run is this worker's: a recovered run's old worker never overwrites what the
        new attempt found (:class:`agency.jobs.JobLost`)."""
        saved = (
            Audience.objects.for_client(self.audience.client_id)
            .filter(pk=self.audience.pk)
            .filter(Exists(self.run.owned_rows()))
            .update(remote=self.audience.remote)
        )
        if not saved:
            raise JobLost(self.run)


def find_or_create(
    find: Callable[[], dict | None], create: Callable[[], dict], attempts: int = 4
) -> dict:
    """Create a remote object unless it exists; after a lost reply look again, never re-send
    blindly (the platform may have created it before the connection dropped)."""
    last: OutcomeUnknown | None = None
    for _ in range(attempts):
        found = find()
        if found is not None:
            return found
        try:
            return create()
        except OutcomeUnknown as exc:
            last = exc
    found = find()
    if found is not None:
        return found
    raise PlatformUnavailable(str(last))


# --------------------------------------------------------------------------------------------
# Yandex Audiences


def _matched(segment: dict) -> float | None:
    value = segment.get("matched_percentage")
    return float(value) if value is not None else None


def _yandex_upload(ctx: SyncContext, api: yandex_api.YandexAudiencesClient) -> dict:
    """Upload the whole snapshot as a new segment and confirm it."""
    kinds = audience_kinds(ctx.audience)
    name = ctx.key

    def find() -> dict | None:
        return next(iter(api.segments_named(name)), None)

    def create() -> dict:
        blocks = {kind: snapshot_blocks(ctx.snapshot.pk, kind) for kind in kinds}
        with yandex_csv(blocks) as export:
            ctx.progress(60, gettext_noop("загрузка файла в Яндекс Аудитории"))
            segment = api.upload_csv(export.path, filename=f"{name}.csv")
            ctx.outcome.uploaded = export.lines
            return segment

    segment = find_or_create(find, create)
    ctx.audience.remote = {"segment_id": segment["id"], "snapshot_id": ctx.snapshot.pk}
    ctx.remote_save()
    ctx.step(f"файл загружен: сегмент {segment['id']}")
    if segment.get("status") == "uploaded":
        try:
            segment = api.confirm(
                segment["id"], name=f"{ctx.audience.name} (CVM #{ctx.audience.pk})"
            )
        except PlatformError as exc:
            # A confirm whose reply was lost: the segment is past "uploaded" already.
            current = api.segment(segment["id"])
            if current is None or current.get("status") == "uploaded":
                raise
            segment = current
            logger.info("confirm of %s repeated: %s", segment["id"], exc.message)
        ctx.step(f"сегмент {segment['id']} подтверждён (SHA256, crm)")
    ctx.outcome.added = ctx.snapshot.size
    return segment


def sync_yandex(ctx: SyncContext, api: yandex_api.YandexAudiencesClient) -> None:
    audience, outcome, snapshot = ctx.audience, ctx.outcome, ctx.snapshot
    remote = audience.remote or {}
    segment = api.segment(remote["segment_id"]) if remote.get("segment_id") else None
    if remote.get("segment_id") and segment is None:
        ctx.step(f"сегмент {remote['segment_id']} не найден на платформе: загружаем заново")
        audience.remote = remote = {}
        ctx.remote_save()
    if segment is not None and segment.get("status") == yandex_api.FEW_DATA:
        changed = _has_difference(snapshot.pk, remote["snapshot_id"], audience_kinds(audience))
        if changed and snapshot.size >= yandex_api.MIN_ROWS:
            ctx.step(f"сегмент {segment['id']} мал (few_data) и не изменяется: заменяем новым")
            api.delete(segment["id"])
            audience.remote = remote = {}
            ctx.remote_save()
            segment = None
    if segment is None:
        if snapshot.size < yandex_api.MIN_ROWS:
            outcome.status, outcome.state = Status.SKIPPED, State.TOO_SMALL
            outcome.messages.append(
                ngettext(
                    "К выгрузке %(n)s идентификатор, а Яндекс Аудитории принимают не меньше "
                    "%(min)s: аудитория не загружена.",
                    "К выгрузке %(n)s идентификаторов, а Яндекс Аудитории принимают не меньше "
                    "%(min)s: аудитория не загружена.",
                    snapshot.size,
                )
                % {"n": snapshot.size, "min": yandex_api.MIN_ROWS}
            )
            return
        segment = _yandex_upload(ctx, api)
    else:
        _yandex_modify(ctx, api, segment)
        segment = api.segment(segment["id"]) or segment
    outcome.remote_status = segment.get("status", "")
    outcome.matched_percent = _matched(segment)
    if outcome.remote_status == yandex_api.FEW_DATA:
        outcome.state = State.TOO_SMALL
        outcome.messages.append(
            "Яндекс распознал слишком мало людей (few_data, меньше 100): сегмент нельзя "
            "использовать в рекламе, пока он не вырастет."
        )
    elif outcome.remote_status != yandex_api.PROCESSED and outcome.state == State.SYNCED:
        outcome.state = State.PROCESSING
    if audience.purpose == Audience.Purpose.LOOKALIKE:
        _yandex_lookalike(ctx, api, segment)


def _has_difference(new_id: int, old_id: int, kinds: tuple[int, ...]) -> bool:
    with snapshot_difference(new_id, old_id, kinds) as difference:
        return bool(difference.added or difference.removed)


def _yandex_modify(ctx: SyncContext, api: yandex_api.YandexAudiencesClient, segment: dict) -> None:
    """Send the change since the snapshot the segment holds: one modify_data per processing
    cycle (the platform refuses the next until it has processed the last)."""
    kinds = audience_kinds(ctx.audience)
    old_id = ctx.audience.remote["snapshot_id"]
    with snapshot_difference(ctx.snapshot.pk, old_id, kinds) as difference:
        _yandex_send_difference(ctx, api, segment, difference)


def _yandex_send_difference(
    ctx: SyncContext,
    api: yandex_api.YandexAudiencesClient,
    segment: dict,
    difference: SnapshotDifference,
) -> None:
    outcome, snapshot, kinds = ctx.outcome, ctx.snapshot, audience_kinds(ctx.audience)
    added, removed = difference.added, difference.removed
    if not added and not removed:
        ctx.step("изменений нет")
        _mark_holding(ctx)
        return
    status = segment.get("status")
    if status != yandex_api.PROCESSED:
        outcome.status, outcome.state = Status.DEFERRED, State.PROCESSING
        outcome.messages.append(
            f"Сегмент {segment['id']} ещё обрабатывается Яндексом (статус {status}); "
            f"изменения (+{added} / −{removed}) будут отправлены при следующем запуске."
        )
        return
    if added and removed:
        modification = "replace"
        blocks = {kind: snapshot_blocks(snapshot.pk, kind) for kind in kinds}
    elif added:
        modification = "addition"
        blocks = {kind: difference.kinds[kind].added.blocks() for kind in kinds}
    else:
        modification = "subtraction"
        blocks = {kind: difference.kinds[kind].removed.blocks() for kind in kinds}
    with yandex_csv(blocks) as export:
        ctx.progress(60, f"modify_data ({modification}) в Яндекс Аудитории")
        api.modify(segment["id"], export.path, modification_type=modification)
        outcome.uploaded = export.lines
    outcome.added, outcome.removed = added, removed
    ctx.step(f"modify_data {modification}: +{added} / −{removed}")
    _mark_holding(ctx)


def _mark_holding(ctx: SyncContext) -> None:
    ctx.audience.remote = {**ctx.audience.remote, "snapshot_id": ctx.snapshot.pk}
    ctx.remote_save()


def _yandex_lookalike(ctx: SyncContext, api: yandex_api.YandexAudiencesClient, seed: dict) -> None:
    audience, outcome = ctx.audience, ctx.outcome
    if audience.remote.get("lookalike_id"):
        lookalike = api.segment(audience.remote["lookalike_id"])
        if lookalike is not None:
            outcome.messages.append(
                f"Look-alike: сегмент {lookalike['id']}, статус {lookalike.get('status')}."
            )
            return
    if seed.get("status") != yandex_api.PROCESSED:
        outcome.messages.append(
            "Look-alike будет создан, когда Яндекс обработает исходный сегмент."
        )
        return
    name = f"{audience.name} — look-alike {audience.lookalike_value} (CVM #{audience.pk})"
    lookalike = find_or_create(
        lambda: next(iter(api.segments_named(name)), None),
        lambda: api.create_lookalike(
            name=name, source_id=seed["id"], value=audience.lookalike_value
        ),
    )
    audience.remote = {**audience.remote, "lookalike_id": lookalike["id"]}
    ctx.remote_save()
    ctx.step(f"look-alike создан: сегмент {lookalike['id']} (точность {audience.lookalike_value})")


# --------------------------------------------------------------------------------------------
# VK Ads / myTarget

_PAD_DOMAIN = "pad.invalid"


def _padding(kind: int, hashing: str, count: int, seed: str) -> list[str]:
    """Lines that match nobody, to lift a differential list to the platform's minimum of 25.

    Hashed: MD5 of a value under the reserved ``.invalid`` domain (RFC 2606), unreachable by
    any real email or phone. Plain emails: such an address itself. Plain phones: numbers of the
    unassigned +7 000 range (assumption: the platform accepts them as well-formed).
    """
    hash_value = hasher_for(hashing)
    lines = []
    for index in range(count):
        if kind == EMAIL or hashing != "plain":
            lines.append(hash_value(f"{seed}-{index}@{_PAD_DOMAIN}"))
        else:
            digest = hashlib.md5(f"{seed}-{index}".encode(), usedforsecurity=False).hexdigest()
            lines.append(f"7000{int(digest[:8], 16) % 10**7:07d}")
    return lines


def sync_vk(ctx: SyncContext, api: vk_api.VkAdsClient) -> None:
    audience, outcome, snapshot = ctx.audience, ctx.outcome, ctx.snapshot
    remote = {"lists": {}, **(audience.remote or {})}
    audience.remote = remote
    statuses = []
    for kind in audience_kinds(audience):
        list_type = vk_api.LIST_TYPES[kind]
        size = snapshot.counts.get("email" if kind == EMAIL else "phone", 0)
        held = remote["lists"].get(list_type)
        if held and api.users_list(held["id"]) is None:
            ctx.step(f"список {held['id']} ({list_type}) удалён на платформе: загружаем заново")
            remote["lists"].pop(list_type)
            ctx.remote_save()
            held = None
        if held is None:
            if size < vk_api.MIN_LIST_LINES:
                outcome.messages.append(
                    ngettext(
                        "%(list)s: %(n)s строка, а список принимается от %(min)s: не загружен.",
                        "%(list)s: %(n)s строк, а список принимается от %(min)s: не загружен.",
                        size,
                    )
                    % {"list": list_type, "n": size, "min": vk_api.MIN_LIST_LINES}
                )
                continue
            name = f"{ctx.key}-{list_type}"

            def create(kind: int = kind, list_type: str = list_type, name: str = name) -> dict:
                with plain_lines(snapshot_blocks(snapshot.pk, kind)) as export:
                    ctx.progress(60, f"загрузка списка {list_type}")
                    created = api.upload_users_list(export.path, name=name, list_type=list_type)
                    outcome.uploaded += export.lines
                    return created

            created = find_or_create(
                lambda name=name: next(iter(api.lists_named(name)), None), create
            )
            remote["lists"][list_type] = {"id": created["id"], "snapshot_id": snapshot.pk}
            ctx.remote_save()
            outcome.added += size
            statuses.append(created.get("status", ""))
            ctx.step(f"список {list_type} загружен: {created['id']} ({size} строк)")
            continue
        _vk_changes(ctx, api, kind, list_type, held)
        current = api.users_list(held["id"]) or {}
        statuses.append(current.get("status", ""))
    if not remote["lists"]:
        outcome.status, outcome.state = Status.SKIPPED, State.TOO_SMALL
        return
    _vk_segment(ctx, api)
    outcome.remote_status = ", ".join(sorted({s for s in statuses if s}))


def _vk_changes(
    ctx: SyncContext, api: vk_api.VkAdsClient, kind: int, list_type: str, held: dict
) -> None:
    """Differential lists against the snapshot the list holds: base=-N removes, base=N adds."""
    snapshot, outcome = ctx.snapshot, ctx.outcome
    with snapshot_difference(snapshot.pk, held["snapshot_id"], (kind,)) as difference:
        changes = difference.kinds[kind]
        for direction, export, sign in (
            ("remove", changes.removed, -1),
            ("add", changes.added, 1),
        ):
            count = export.lines
            if not count:
                continue
            name = f"{ctx.key}-{list_type}-{direction}"
            pad = max(0, vk_api.MIN_DIFF_LINES - count)
            export.write_lines(_padding(kind, ctx.destination.hashing, pad, name))
            export.finish()

            def create(export=export, name=name, sign=sign) -> dict:
                ctx.progress(70, f"{list_type}: {name}")
                created = api.upload_users_list(
                    export.path, name=name, list_type=list_type, base=sign * held["id"]
                )
                outcome.uploaded += export.lines
                return created

            find_or_create(lambda name=name: next(iter(api.lists_named(name)), None), create)
            if direction == "remove":
                outcome.removed += count
            else:
                outcome.added += count
            ctx.step(
                f"{list_type}: {'удалено' if sign < 0 else 'добавлено'} {count}"
                + (f" (+{pad} пустых строк до минимума 25)" if pad else "")
            )
    held["snapshot_id"] = snapshot.pk
    ctx.remote_save()


def _vk_segment(ctx: SyncContext, api: vk_api.VkAdsClient) -> None:
    """The remarketing segment ads are targeted with: positive relations for retargeting and
    look-alike seeds, negative for exclusion."""
    audience = ctx.audience
    lists = audience.remote["lists"]
    relation = "negative" if audience.purpose == Audience.Purpose.EXCLUSION else "positive"
    wanted = sorted(item["id"] for item in lists.values())
    segment = audience.remote.get("segment")
    if segment and segment.get("lists") == wanted:
        return
    name = f"cvm-a{audience.pk}-{'-'.join(str(i) for i in wanted)}"
    created = find_or_create(
        lambda: next((s for s in api.segments() if s.get("name") == name), None),
        lambda: api.create_segment(name=name, relations=[(i, relation) for i in wanted]),
    )
    audience.remote["segment"] = {"id": created["id"], "lists": wanted}
    ctx.remote_save()
    ctx.step(f"сегмент ретаргетинга {created['id']} ({relation}) на списки {wanted}")
    if segment:
        ctx.outcome.messages.append(
            f"Списки аудитории изменились: новый сегмент ретаргетинга {created['id']} "
            f"(прежний {segment['id']}) — замените его в кампаниях."
        )


# --------------------------------------------------------------------------------------------
# The run


def _lease(destination: Destination, run: SyncRun) -> bool:
    now = timezone.now()
    until = now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    return bool(
        Destination.objects.for_client(destination.client_id)
        .filter(pk=destination.pk)
        .filter(Q(busy_run_id__isnull=True) | Q(busy_run_id=run.pk) | Q(busy_until__lt=now))
        .update(busy_run_id=run.pk, busy_until=until)
    )


def _release(destination: Destination, run: SyncRun) -> None:
    Destination.objects.for_client(destination.client_id).filter(
        pk=destination.pk, busy_run_id=run.pk
    ).update(busy_run_id=None, busy_until=None)


def platform_client(destination: Destination, **http_options: Any):
    """The HTTP client of the destination's platform, at the platform's address from the
    deployment's settings (``<PROVIDER>_BASE_URL``, else the official host): never an address
    from tenant data."""
    credentials = secret_decrypt(destination.credentials_encrypted)
    if destination.platform == Destination.Platform.YANDEX_AUDIENCES:
        return yandex_api.YandexAudiencesClient(
            base_url=yandex_api.base_url(), token=credentials["token"], **http_options
        )
    provider = mytarget if destination.platform == Destination.Platform.MYTARGET else vk_ads
    base_url = provider.base_url()
    tokens = VkTokenCache(
        destination,
        lambda: PlatformHttp(base_url, error_parser=vk_api.vk_error, **http_options),
    )
    return vk_api.VkAdsClient(base_url=base_url, token_cache=tokens, **http_options)


def _progress_writer(
    run: SyncRun, on_progress: Callable[[int, str], None] | None
) -> Callable[[int, str], None]:
    def write(percent: int, stage: str) -> None:
        run.progress_write(progress=percent, stage=stage[:100])
        if on_progress is not None:
            on_progress(percent, stage)

    return write


def _snapshot_for(
    run: SyncRun, audience: Audience, destination: Destination, progress
) -> AudienceSnapshot:
    """The run's snapshot: reused when complete (a resumed run), built otherwise."""
    snapshot = run.snapshot
    if snapshot is not None and snapshot.complete:
        return snapshot
    if snapshot is None:
        snapshot = AudienceSnapshot.objects.create(client_id=run.client_id, audience=audience)
        run.progress_write(snapshot=snapshot)
    percents = iter((25, 40, 50))

    def built(stage: str) -> None:
        progress(next(percents, 50), stage)

    counts = snapshot_build(audience, snapshot, hashing=destination.hashing, progress=built)
    run.progress_write(**{name: getattr(counts, name) for name in COUNT_FIELDS})
    return snapshot


def _snapshots_prune(audience: Audience, keep: set[int]) -> None:
    """Drop snapshots no remote object holds any more (their items go with them)."""
    from .models import AudienceSnapshotChunk

    stale = list(
        AudienceSnapshot.objects.for_client(audience.client_id)
        .filter(audience=audience)
        .exclude(pk__in=keep)
        .exclude(
            pk__in=SyncRun.objects.for_client(audience.client_id)
            .filter(audience=audience, status__in=(Status.PENDING, Status.RUNNING))
            .exclude(snapshot=None)
            .values("snapshot_id")
        )
        .values_list("pk", flat=True)
    )
    if stale:
        AudienceSnapshotChunk.objects.filter(snapshot_id__in=stale).delete()
        AudienceSnapshot.objects.for_client(audience.client_id).filter(pk__in=stale).delete()


def _held_snapshots(remote: dict) -> set[int]:
    held = {remote.get("snapshot_id")}
    held |= {item.get("snapshot_id") for item in (remote.get("lists") or {}).values()}
    return {pk for pk in held if pk}


def sync_run_execute(
    run: SyncRun,
    *,
    http_options: dict[str, Any] | None = None,
    on_progress: Callable[[int, str], None] | None = None,
) -> SyncRun:
    """Run one pending sync to its end; raises DestinationBusy when another sync holds the
    destination (the run stays pending). Platform refusals end the run as failed with the
    platform's message; unexpected errors are recorded and re-raised. :class:`JobLost` (the run
    was recovered and claimed again meanwhile) stops it, leaving the lease to the new attempt."""
    audiences = Audience.objects.for_client(run.client_id).select_related(
        "client", "destination", "segment", "destination__recipient"
    )
    destination = audiences.get(pk=run.audience_id).destination
    if not _lease(destination, run):
        raise DestinationBusy(f"кабинет {destination.pk} занят другой синхронизацией")
    lost = False
    try:
        if not run.claim(error=""):
            return run
        # Read once the run is ours: the remote ids as an earlier attempt left them.
        audience = audiences.get(pk=run.audience_id)
        with run.beating():
            return _execute(run, audience, audience.destination, http_options or {}, on_progress)
    except JobLost:
        lost = True
        raise
    finally:
        if not lost:
            _release(destination, run)


def _execute(
    run: SyncRun,
    audience: Audience,
    destination: Destination,
    http_options: dict,
    on_progress: Callable[[int, str], None] | None,
) -> SyncRun:
    progress = _progress_writer(run, on_progress)
    outcome = Outcome()
    api = None
    try:
        if not destination.is_active:
            raise PlatformError("кабинет отключён: синхронизация не выполняется")
        progress(2, gettext_noop("проверка трансграничной передачи"))
        transfer_check(recipient=destination.recipient, operation=f"audience_sync:{audience.pk}")
        progress(5, gettext_noop("отбор участников"))
        snapshot = _snapshot_for(run, audience, destination, progress)
        api = platform_client(destination, **http_options)
        ctx = SyncContext(run, audience, destination, snapshot, outcome, progress, http_options)
        ctx.step(f"снимок {snapshot.pk}: {snapshot.size} идентификаторов {snapshot.counts}")
        if destination.platform == Destination.Platform.YANDEX_AUDIENCES:
            sync_yandex(ctx, api)
        else:
            sync_vk(ctx, api)
    except JobLost:
        raise
    except (TransferRefused, PlatformError, CredentialsUnreadable) as exc:
        outcome.status, outcome.state = Status.FAILED, State.FAILED
        message = getattr(exc, "message", str(exc))
        run.platform_error = message if isinstance(exc, PlatformError) and exc.status else ""
        run.error = message
        outcome.messages.append(message)
    except Exception as exc:
        logger.exception("audience sync run %s failed", run.pk)
        _finish(
            run,
            audience,
            Outcome(Status.FAILED, State.FAILED),
            api,
            f"{type(exc).__name__}: {exc}",
        )
        raise
    finally:
        if api is not None:
            api.close()
    return _finish(run, audience, outcome, api, run.error)


def _finish(run: SyncRun, audience: Audience, outcome: Outcome, api, error: str) -> SyncRun:
    now = timezone.now()
    with site_language():  # stored; the portal translates it when it shows it
        stage = str(Status(outcome.status).label)
    retry_at = None
    if outcome.status == Status.DEFERRED:
        # Retried on its own until the platform has the change (services: deferred_retry_plan).
        retry, retry_at = deferred_retry_plan(run, now=now)
        if retry_at is not None:
            outcome.messages.append(
                f"Повторная попытка {retry} из {DEFERRED_RETRIES} — "
                f"в {timezone.localtime(retry_at, audience.client.tzinfo):%H:%M}."
            )
        else:
            outcome.messages.append(
                f"Платформа обрабатывает сегмент дольше {DEFERRED_RETRIES} повторных попыток: "
                "изменения будут отправлены при следующей синхронизации по расписанию."
            )
    run.finish(
        outcome.status,
        finished_at=now,
        progress=100,
        stage=stage,
        uploaded=outcome.uploaded,
        added=outcome.added,
        removed=outcome.removed,
        remote_status=outcome.remote_status,
        matched_percent=outcome.matched_percent,
        request_ids=(api.http.request_ids if api is not None else [])[-200:],
        message="\n".join(outcome.messages),
        error=error or "",
        platform_error=run.platform_error,
    )
    remote = (
        Audience.objects.for_client(audience.client_id)
        .values_list("remote", flat=True)
        .get(pk=audience.pk)
    )
    changes: dict[str, Any] = {"state": outcome.state, "state_message": run.message[:2000]}
    if outcome.status in (Status.SUCCEEDED, Status.DEFERRED, Status.SKIPPED):
        changes["last_synced_at"] = now
    if outcome.remote_status:
        changes["remote_status"] = outcome.remote_status
    if outcome.matched_percent is not None:
        changes["matched_percent"] = outcome.matched_percent
    held = _held_snapshots(remote)
    if outcome.status == Status.SUCCEEDED and run.snapshot_id in held:
        changes["confirmed_snapshot_id"] = run.snapshot_id
    audience_rows = Audience.objects.for_client(audience.client_id).filter(pk=audience.pk)
    audience_rows.update(**changes)
    if retry_at is not None:
        audience_sync_want(audience_rows, at=retry_at, source=RETRY_SOURCE)
    if run.snapshot_id:
        _snapshots_prune(audience, held)
    return run


def audience_sync_now(
    audience: Audience,
    *,
    source: str,
    http_options: dict | None = None,
    on_progress: Callable[[int, str], None] | None = None,
) -> SyncRun:
    """Request the audience's run (or pick up the one pending) and execute it here, in the
    foreground."""
    from .services import audience_sync_request

    run, _ = audience_sync_request(audience=audience, source=source, enqueue=False)
    return sync_run_execute(run, http_options=http_options, on_progress=on_progress)
