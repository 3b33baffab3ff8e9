"""Value-based bidding: recommended Yandex Direct bid modifiers per audience from predicted CLV.

The agency's rule (its offer): audiences of the most valuable customers bid up, the least
valuable bid down or are excluded, returning customers in between get a moderate raise.
An audience's value is the mean predicted CLV of its segment's members, placed on the
client's own CLV distribution (percentile of that mean among all the client's customers):

- exclusion audiences                          -> 0 (do not show ads);
- percentile >= 80 (the top 20 %)              -> 200 (+100 %);
- percentile < 20 (the bottom)                 -> 50 (-50 %), or 0 with ``exclude_bottom``;
- in between (returning visitors)              -> 130..200, linear in the percentile.

``BidModifier`` is an integer percent of the bid (100 = unchanged), audience adjustments
0..1300 (Yandex Direct API v5 ``bidmodifiers``). :func:`recommend` is pure (no Django);
:func:`bid_modifiers_for_client` gathers the figures and :func:`bidmodifiers_add_body` /
:func:`bid_modifiers_rows` (the CSV download) export them.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal

TOP_SHARE_PERCENTILE = 80.0
BOTTOM_PERCENTILE = 20.0
TOP_MODIFIER = 200
BOTTOM_MODIFIER = 50
RETURNING_MIN, RETURNING_MAX = 130, 200
MODIFIER_MIN, MODIFIER_MAX = 0, 1300


@dataclass(frozen=True)
class BidRecommendation:
    audience_id: int
    audience: str
    segment: str
    members: int
    mean_clv: Decimal | None
    clv_percentile: float | None
    bid_modifier: int | None
    reason: str
    retargeting_condition_id: int | None
    remote_segment_id: int | None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["mean_clv"] = str(self.mean_clv) if self.mean_clv is not None else None
        return data


def percentile_of(value: float, sorted_values: list[float]) -> float:
    """Share (0..100) of the client's customers whose CLV is below ``value``."""
    if not sorted_values:
        return 0.0
    return 100.0 * bisect_left(sorted_values, value) / len(sorted_values)


def modifier_for(percentile: float, *, exclusion: bool, exclude_bottom: bool) -> tuple[int, str]:
    if exclusion:
        return 0, "аудитория-исключение: показы отключены"
    if percentile >= TOP_SHARE_PERCENTILE:
        return TOP_MODIFIER, "верхние 20 % по прогнозу CLV: +100 %"
    if percentile < BOTTOM_PERCENTILE:
        if exclude_bottom:
            return 0, "нижние 20 % по прогнозу CLV: исключить"
        return BOTTOM_MODIFIER, "нижние 20 % по прогнозу CLV: −50 %"
    share = (percentile - BOTTOM_PERCENTILE) / (TOP_SHARE_PERCENTILE - BOTTOM_PERCENTILE)
    modifier = round(RETURNING_MIN + share * (RETURNING_MAX - RETURNING_MIN))
    return modifier, f"возвращающиеся покупатели, {percentile:.0f}-й перцентиль CLV"


def recommend(
    audiences: list[dict], client_clv: list[float], *, exclude_bottom: bool = False
) -> list[BidRecommendation]:
    """``audiences``: dicts with id, name, segment, purpose, members, mean_clv (None without
    scores), retargeting_condition_id, remote_segment_id. ``client_clv``: every scored
    customer's predicted CLV."""
    ordered = sorted(client_clv)
    result = []
    for item in audiences:
        mean = item["mean_clv"]
        exclusion = item["purpose"] == "exclusion"
        if mean is None and not exclusion:
            result.append(
                BidRecommendation(
                    item["id"], item["name"], item["segment"], item["members"], None, None,
                    None, "нет прогноза CLV у участников: сначала запустите скоринг",
                    item["retargeting_condition_id"], item["remote_segment_id"],
                )
            )  # fmt: skip
            continue
        percentile = percentile_of(float(mean), ordered) if mean is not None else None
        mean_rub = (
            Decimal(mean).quantize(Decimal("0.01"), ROUND_HALF_UP) if mean is not None else None
        )
        modifier, reason = modifier_for(
            percentile or 0.0, exclusion=exclusion, exclude_bottom=exclude_bottom
        )
        modifier = max(MODIFIER_MIN, min(MODIFIER_MAX, int(modifier)))
        result.append(
            BidRecommendation(
                item["id"], item["name"], item["segment"], item["members"],
                mean_rub,
                round(percentile, 1) if percentile is not None else None, modifier, reason,
                item["retargeting_condition_id"], item["remote_segment_id"],
            )
        )  # fmt: skip
    return result


def bidmodifiers_add_body(recommendations: list[BidRecommendation], campaign_id: int) -> dict:
    """The JSON body of a Yandex Direct ``bidmodifiers.add`` call (audiences that have a
    retargeting condition id and a modifier)."""
    adjustments = [
        {"RetargetingConditionId": r.retargeting_condition_id, "BidModifier": r.bid_modifier}
        for r in recommendations
        if r.retargeting_condition_id is not None and r.bid_modifier is not None
    ]
    return {
        "method": "add",
        "params": {
            "BidModifiers": [{"CampaignId": campaign_id, "RetargetingAdjustments": adjustments}]
        },
    }


CSV_COLUMNS = [
    "audience_id", "audience", "segment", "members", "mean_clv", "clv_percentile",
    "bid_modifier", "retargeting_condition_id", "remote_segment_id", "reason",
]  # fmt: skip


def bid_modifiers_rows(recommendations: list[BidRecommendation]) -> list[list]:
    """The rows of the CSV download (columns ``CSV_COLUMNS``; the file is written by
    ``agency.exports``): numbers stay numbers, so a bid modifier is never taken for text."""
    return [[getattr(r, column) for column in CSV_COLUMNS] for r in recommendations]
