"""Reads of the audiences app."""

from __future__ import annotations

from django.db.models import Prefetch

from .models import Audience, SyncRun

RECENT_RUNS = 5


def audiences_with_recent_runs(*, client, recent: int = RECENT_RUNS) -> list[Audience]:
    """A client's audiences by name, each with ``recent_runs`` (its newest ``recent`` syncs)."""
    runs = SyncRun.objects.for_client(client).order_by("-created_at")
    audiences = list(
        Audience.objects.for_client(client)
        .select_related("destination", "segment")
        .prefetch_related(Prefetch("sync_runs", queryset=runs, to_attr="all_runs"))
        .order_by("name")
    )
    for audience in audiences:
        audience.recent_runs = audience.all_runs[:recent]
    return audiences
