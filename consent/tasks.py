"""Celery tasks of the consent ledger: thin, by id, safe to deliver twice."""

from __future__ import annotations

from celery import shared_task

from clients.models import Client

from .services import consent_checkpoint_write


@shared_task(acks_late=True)
def consent_checkpoint_task(client_id: int) -> int | None:
    """Write a checkpoint of one client's ledger; returns the audit log entry's id (None when
    the ledger is empty). A second delivery finds the chain unchanged and writes nothing."""
    client = Client.objects.filter(pk=client_id).first()
    if client is None:
        return None
    checkpoint = consent_checkpoint_write(client=client)
    return checkpoint.entry_id if checkpoint else None


@shared_task(acks_late=True)
def consent_checkpoints_daily_task() -> list[int]:
    """Daily beat fan-out: one ``consent_checkpoint_task`` per client (inactive ones too: their
    ledger is kept as evidence all the same)."""
    client_ids = list(Client.objects.order_by("pk").values_list("pk", flat=True))
    for client_id in client_ids:
        consent_checkpoint_task.delay(client_id)
    return client_ids
