"""Holdout arms of a trigger chain: the shared hash rule of :mod:`agency.arms` (also used by the
ad audiences' holdouts), named for chains.

A person's arm in a chain is a stable hash of (client, chain, customer): the same person lands in
the same arm on every tick, in every process, after a restart, whatever order people arrive in.
The realised share is tested against the planned one with a chi-square goodness-of-fit test
(:func:`sample_ratio_p_value`).
"""

from __future__ import annotations

import numpy as np

from agency.arms import (  # noqa: F401 - re-exported for the chain engine and its callers
    SRM_ALERT_P,
    SRM_MIN_ASSIGNMENTS,
    held_out_mask,
    holdout_fraction,
    is_held_out,
    sample_ratio_p_value,
)

TREATMENT = "treatment"
HOLDOUT = "holdout"


def arm_of(client_id: int, chain_id: int, customer_id: int, holdout_percent: int) -> str:
    return HOLDOUT if is_held_out(client_id, chain_id, customer_id, holdout_percent) else TREATMENT


def arms_of(
    client_id: int, chain_id: int, customer_ids: np.ndarray | list[int], holdout_percent: int
) -> np.ndarray:
    """Booleans, True for the holdout arm, for many people at once (same rule as arm_of)."""
    return held_out_mask(client_id, chain_id, customer_ids, holdout_percent)
