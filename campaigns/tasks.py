"""Thin Celery tasks over campaigns.services: a fan-out on beat, one tick per client."""

from __future__ import annotations

from celery import shared_task

from .services import chains_tick, clients_with_chain_work, outbox_recover


@shared_task(acks_late=True)
def chains_tick_all_task() -> list[int]:
    client_ids = clients_with_chain_work()
    for client_id in client_ids:
        chains_tick_task.delay(client_id)
    return client_ids


@shared_task(acks_late=True)
def chains_tick_task(client_id: int) -> dict:
    return chains_tick(client_id).as_dict()


@shared_task(acks_late=True)
def outbox_recover_task() -> dict:
    return outbox_recover()
