"""An audience's holdout (control group): who is left out of every upload, by the shared hash
rule of :mod:`agency.arms`, so an ad audience's uplift is measured the way a chain's is.

- Unit ``person``: a customer is held out when the hash of (client, audience, customer) falls
  under the share: the same person on every snapshot, in every process, whatever order.
- Unit ``region`` (geo split, Enterprise): whole regions are held out, by the hash of (client,
  audience, region). The region is the customer's city (``Customer.city``, the one structured
  place field), normalised by :func:`region_sql` (trimmed, lowercased, ё as е); people with no
  city are not in the test: they are always uploaded and left out of the measurement.

Nothing about the split is stored per person: the held-out set is recomputed from the hash
whenever it is needed (a snapshot now, the measurement later, ``reports.audience_results``),
from the share and unit fixed while the test runs and ``holdout_started_at``.

The hash is Python's (blake2b, as the chains'), so a set-based statement gets the held-out ids
as a temporary table (:func:`ids_temp_table`) built from one vectorised pass over the ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import Q

from agency import pgcopy
from agency.arms import SRM_ALERT_P, held_out_mask, sample_ratio_p_value
from clients.models import Customer

from .models import Audience, SyncRun

_CUSTOMERS = connection.ops.quote_name(Customer._meta.db_table)


def holdout_running(audience: Audience) -> bool:
    return audience.holdout_percent > 0 and audience.holdout_started_at is not None


def region_sql(alias: str = "c") -> str:
    """SQL of a customer's region for the geo split: its city, trimmed, lowercased, ё as е
    ('' when absent)."""
    return f"REPLACE(LOWER(TRIM(COALESCE({alias}.city, ''))), 'ё', 'е')"


def regions_held_out(audience: Audience, regions: Sequence[str]) -> set[str]:
    """The held-out regions among ``regions`` (the empty region is never held out)."""
    names = sorted({r for r in regions if r})
    mask = held_out_mask(audience.client_id, audience.pk, names, audience.holdout_percent)
    return {name for name, held in zip(names, mask, strict=True) if held}


def held_out_flags(
    audience: Audience, customer_ids: Sequence[int], regions: Sequence[str] | None = None
) -> np.ndarray:
    """Booleans, True for the held-out customers among ``customer_ids`` (``regions``, their
    regions by :func:`region_sql`, needed for the geo split)."""
    if audience.holdout_percent <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    if audience.holdout_unit == Audience.HoldoutUnit.REGION:
        if regions is None:
            raise ValueError("the geo split needs the customers' regions")
        held = regions_held_out(audience, regions)
        return np.fromiter((r in held for r in regions), dtype=bool, count=len(regions))
    return held_out_mask(audience.client_id, audience.pk, customer_ids, audience.holdout_percent)


def in_test_flags(audience: Audience, regions: Sequence[str] | None) -> np.ndarray | None:
    """For the geo split, True for the customers who have a region (the others are not in the
    test); None for a person-level holdout (everyone is in it)."""
    if audience.holdout_unit != Audience.HoldoutUnit.REGION or regions is None:
        return None
    return np.fromiter((bool(r) for r in regions), dtype=bool, count=len(regions))


def ids_temp_table(cursor, name: str, ids: Sequence[int] | np.ndarray) -> None:
    """A temporary table ``name (id)`` holding ``ids`` (dropped first if it exists)."""
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TEMPORARY TABLE {name} (id bigint PRIMARY KEY)")
    if not len(ids):
        return
    if connection.vendor == "postgresql":
        with pgcopy.copy_in(cursor, name, ("id",)) as copy:
            for pk in ids:
                copy.write_row((int(pk),))
    else:
        cursor.executemany(f"INSERT INTO {name} (id) VALUES (%s)", [(int(pk),) for pk in ids])  # noqa: S608


def candidates_hold_out(
    cursor, audience: Audience, candidates: str, fate_from: str, fate_to: str
) -> int:
    """Move the held-out people of the temporary table ``candidates`` (columns ``id``,
    ``fate``) from ``fate_from`` to ``fate_to``; return how many."""
    if audience.holdout_percent <= 0:
        return 0
    cursor.execute(
        f"SELECT x.id, {region_sql('c')} FROM {candidates} x "  # noqa: S608 - names built here
        f"JOIN {_CUSTOMERS} c ON c.id = x.id AND c.client_id = %s WHERE x.fate = %s",
        [audience.client_id, fate_from],
    )
    rows = cursor.fetchall()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    flags = held_out_flags(audience, ids, [row[1] for row in rows])
    held = [pk for pk, flag in zip(ids, flags, strict=True) if flag]
    if not held:
        return 0
    table = f"{candidates}_held"
    ids_temp_table(cursor, table, held)
    cursor.execute(
        f"UPDATE {candidates} SET fate = %s WHERE id IN (SELECT id FROM {table})",  # noqa: S608
        [fate_to],
    )
    cursor.execute(f"DROP TABLE {table}")
    return len(held)


def holdout_srm_p_value(audience: Audience, held_out: int, treatment: int) -> float | None:
    """The sample-ratio check of a person-level holdout (the chains' chi-square); None for the
    geo split, whose units are regions of unequal size (the share of people is not planned)."""
    if audience.holdout_unit != Audience.HoldoutUnit.PERSON:
        return None
    return sample_ratio_p_value(held_out, treatment, audience.holdout_percent)


@dataclass(frozen=True)
class HoldoutCheck:
    """The last sync's split since the test started: held out against uploadable people (the
    exported and those without an identifier: both passed every rule), and its sample-ratio
    check (None: too few people, or the geo split)."""

    running: bool
    held_out: int = 0
    treatment: int = 0
    srm_p_value: float | None = None

    @property
    def realised_percent(self) -> float | None:
        total = self.held_out + self.treatment
        return 100 * self.held_out / total if total else None

    @property
    def srm_alert(self) -> bool:
        return self.srm_p_value is not None and self.srm_p_value < SRM_ALERT_P


def audience_holdout_check(*, audience: Audience) -> HoldoutCheck:
    if not holdout_running(audience):
        return HoldoutCheck(running=False)
    run = (
        SyncRun.objects.for_client(audience.client_id)
        .filter(audience=audience, created_at__gte=audience.holdout_started_at)
        .filter(Q(held_out__gt=0) | Q(exported__gt=0) | Q(no_identifier__gt=0))
        .order_by("-created_at", "-id")
        .only("held_out", "exported", "no_identifier")
        .first()
    )
    if run is None:
        return HoldoutCheck(running=True)
    treatment = run.exported + run.no_identifier
    return HoldoutCheck(
        running=True,
        held_out=run.held_out,
        treatment=treatment,
        srm_p_value=holdout_srm_p_value(audience, run.held_out, treatment),
    )
