"""Demo segments and the first scoring run, so that a new user's first `make run` shows RFM,
lifecycle, predictive (churn, CLV) and look-alike segments with members, and the scoring
analytics, without waiting for the nightly run.

The segments are created through ``segment_create`` (the tier rule applies: predictive ones only
where ``clients.tiers`` says the tier has them) without a refresh; the scoring run that follows
(requested like any other run, executed here in the foreground, as ``score_client`` does)
refreshes every segment of the client from the scores it has just written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clients.models import Client
from clients.tiers import tier_has
from segments import lifecycle, rfm
from segments.models import ScoringRun, Segment
from segments.segmentation import segment_create, segment_memberships_refresh
from segments.services import ScoringRunActive, scoring_run_execute, scoring_run_request

Kind = Segment.Kind

SegmentSpec = tuple[str, str, dict[str, Any]]  # name, kind, definition

# Every tier. With the two segments of the demo audiences, a Foundation client (at most 5 active
# segments) keeps one free for the user to try.
BASE_SEGMENTS: tuple[SegmentSpec, ...] = (
    ("Чемпионы и лояльные", Kind.RFM, {"names": [rfm.CHAMPIONS, rfm.LOYAL]}),
    ("Основа look-alike: лучшие по сумме покупок", Kind.LOOKALIKE_SEED, {"by": "monetary"}),
)
# Tiers with predictive segments (Advanced CVM and up), which allow more segments too.
PREDICTIVE_TIER_SEGMENTS: tuple[SegmentSpec, ...] = (
    ("Вернуть: давно не покупали", Kind.LIFECYCLE, {"stages": [lifecycle.WIN_BACK]}),
    ("Риск оттока", Kind.PREDICTIVE, {"churn_at_least": 0.6}),
    ("Лучшие 20 % по прогнозу CLV", Kind.PREDICTIVE, {"clv_top_percent": 20}),
    ("Основа look-alike: лучшие по CLV", Kind.LOOKALIKE_SEED, {"by": "predicted_clv"}),
)


def demo_segment(
    client: Client, name: str, kind: str, definition: dict[str, Any], *, refresh: bool = True
) -> Segment:
    """The client's segment of that name, created (through the tier rule) when missing."""
    existing = Segment.objects.for_client(client).filter(name=name).first()
    return existing or segment_create(
        client=client,
        name=name,
        kind=kind,
        definition=definition,
        source="demo",
        refresh=refresh,
    )


def demo_segments(*, client: Client) -> list[Segment]:
    """Create (once) the showcase segments the client's tier allows; members come with the
    scoring run (:func:`demo_scoring`)."""
    specs = BASE_SEGMENTS
    if tier_has(client=client, feature="predictive"):
        specs += PREDICTIVE_TIER_SEGMENTS
    return [
        demo_segment(client, name, kind, definition, refresh=False)
        for name, kind, definition in specs
    ]


def demo_scoring(
    *, client: Client, on_progress: Callable[[int, str], None] | None = None
) -> ScoringRun:
    """Score the client now, in this process, then refresh every segment of the client.

    A run already pending or running (a worker got there first) is left to finish and
    returned as it is. A failed run raises, as ``score_client`` does.
    """
    try:
        run = scoring_run_request(client=client, source="demo", enqueue=False)
    except ScoringRunActive as exc:
        return exc.run
    run = scoring_run_execute(run=run, on_progress=on_progress)
    if run.status == ScoringRun.Status.SUCCEEDED:
        segment_memberships_refresh(client=client, run=run)
    return run
