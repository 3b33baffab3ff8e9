"""The engine's entry points: one tick of one client (beat, ``run_chains``, tests) and the list
of clients that have something to run. Tasks and the command stay thin and call these."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from clients.models import Client

from .dispatch import outbox_dispatch, outbox_recover
from .engine import (
    Progress,
    TickReport,
    campaign_settings_for,
    chains_enrol,
    chains_exit,
    chains_schedule,
)
from .models import CampaignSettings, Enrollment, Message, TriggerChain


def chains_tick(
    client_id: int,
    *,
    now: dt.datetime | None = None,
    dispatch: bool = True,
    dry_run: bool = False,
    max_messages: int | None = None,
    progress: Progress | None = None,
) -> TickReport:
    """Enrol, exit, schedule and (unless ``dispatch`` is off) send, for one client.

    Enrolment runs under a lock on the client's campaign settings row, so two ticks of one
    client never enrol the same people twice (a second tick skips it); scheduling and dispatch
    take their rows with SKIP LOCKED and may run side by side. ``dry_run`` enrols nothing and
    sends nothing: it reports who would enter each chain."""
    now = now or timezone.now()
    report = TickReport()
    campaign_settings_for(client_id)
    if dry_run:
        chains_enrol(client_id, now, report, dry_run=True)
        return report
    with transaction.atomic():
        locked = (
            CampaignSettings.objects.for_client(client_id)
            .select_for_update(skip_locked=True)
            .filter(client_id=client_id)
            .first()
        )
        if locked is not None:
            chains_exit(client_id, now, report)
            chains_enrol(client_id, now, report)
    if progress:
        progress("enrol", 1)
    chains_schedule(client_id, now, report, progress=progress)
    if dispatch:
        outbox_dispatch(client_id, now, report, max_messages=max_messages, progress=progress)
    return report


def clients_with_chain_work(now: dt.datetime | None = None) -> list[int]:
    """Clients with an active chain, a running enrolment or a message to send."""
    now = now or timezone.now()
    active = TriggerChain.objects.filter(client=OuterRef("pk"), status=TriggerChain.Status.ACTIVE)
    running = Enrollment.objects.filter(client=OuterRef("pk"), state=Enrollment.State.ACTIVE)
    due = Message.objects.filter(
        client=OuterRef("pk"),
        state__in=(Message.State.QUEUED, Message.State.DEFERRED),
        due_at__lte=now,
    )
    return list(
        Client.objects.filter(is_active=True)
        .filter(Q(Exists(active)) | Q(Exists(running)) | Q(Exists(due)))
        .values_list("pk", flat=True)
    )


__all__ = ["chains_tick", "clients_with_chain_work", "outbox_recover"]
