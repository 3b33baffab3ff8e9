"""The one tier rule: every feature flag and every limit of a client's tier is checked here.

The flags and limits are data (``clients.Tier`` rows, seeded by a data migration and edited in
the admin), never hard-coded in a view. A service that offers a tier feature calls
:func:`tier_require`; a service that creates something counted by a tier calls
:func:`tier_check_limit`. Both raise :class:`TierLimitError` (HTTP 403 through the API's error
handler), whose message names the client's tier and the lowest tier (by ``position``) that
unlocks the feature or allows more, read from the Tier rows. Pages that only show or hide a
feature ask :func:`tier_has`; pages that show what the client's tier offers (the portal
dashboard) take :func:`tier_offer`, which lists only what the platform has built: a feature of the
agency's offer that does not exist yet (incrementality tests, programmatic/DMP export) is never
shown as something the client has.

Codes, stable for API callers: ``tier_feature_<feature>`` (``tier_feature_predictive``,
``tier_feature_value_bidding``, ``tier_feature_cohorts``, ...) and ``tier_limit_<limit>``
(``tier_limit_segments``, ``tier_limit_trigger_chains``); the body also carries ``tier`` (the
client's tier code), ``required_tier`` (the unlocking tier's code, or null when no tier does) and
for limits ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q
from django.utils.functional import Promise
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from agency.errors import ForbiddenError

from .models import Client, Tier


class TierLimitError(ForbiddenError):
    """The client's tier does not allow it; the message names the tier that does."""

    default_code = "tier_limit"


@dataclass(frozen=True)
class _Feature:
    name: Promise  # the subject of the sentence, capitalised
    available_from: Promise  # "... available from the %(tier)s tier" (the verb agrees with it)
    in_no_tier: Promise
    title: Promise  # what the portal calls it
    built: bool  # does the platform have it? Not yet: in the offer, never shown as working

    @property
    def label(self) -> str:
        return str(self.name)


# What each flag of Tier.FEATURES is called in a refusal and in the portal, and whether it is
# built. A feature is switched to built=True in the change that makes it work.
FEATURES: dict[str, _Feature] = {
    "predictive": _Feature(
        _("Предиктивные сегменты"),
        _("Предиктивные сегменты доступны с тарифа %(tier)s"),
        _("Предиктивные сегменты не входят ни в один тариф агентства"),
        title=_("Predictive segments (churn, CLV)"),
        built=True,
    ),
    "omnichannel": _Feature(
        _("Омниканальные триггеры"),
        _("Омниканальные триггеры доступны с тарифа %(tier)s"),
        _("Омниканальные триггеры не входят ни в один тариф агентства"),
        title=_("Omnichannel triggers"),
        built=True,
    ),
    "value_bidding": _Feature(
        _("Ставки по ценности клиента"),
        _("Ставки по ценности клиента доступны с тарифа %(tier)s"),
        _("Ставки по ценности клиента не входят ни в один тариф агентства"),
        title=_("Value-based bidding"),
        built=True,
    ),
    "cohorts": _Feature(
        _("Когортный анализ"),
        _("Когортный анализ доступен с тарифа %(tier)s"),
        _("Когортный анализ не входит ни в один тариф агентства"),
        title=_("Cohort analysis"),
        built=True,
    ),
    "incrementality": _Feature(
        _("Тесты инкрементальности"),
        _("Тесты инкрементальности доступны с тарифа %(tier)s"),
        _("Тесты инкрементальности не входят ни в один тариф агентства"),
        title=_("Incrementality tests"),
        built=True,  # #13: the test calculator, audience holdouts and the geo split
    ),
    "programmatic": _Feature(
        _("Programmatic / DMP-экспорт"),
        _("Programmatic / DMP-экспорт доступен с тарифа %(tier)s"),
        _("Programmatic / DMP-экспорт не входит ни в один тариф агентства"),
        title=_("Programmatic / DMP export"),
        built=False,
    ),
}


@dataclass(frozen=True)
class _Limit:
    field: str  # the Tier field holding the maximum (null = no limit)
    rule: Promise  # the sentence, its noun in the plural form of the maximum
    hint: Promise  # what the client can do instead of upgrading
    title: Promise  # what the portal calls it
    built: bool  # is what it counts built? (see _Feature.built)


LIMITS: dict[str, _Limit] = {
    "segments": _Limit(
        "max_segments",
        ngettext_lazy(
            "На тарифе %(tier)s не больше %(maximum)s активного сегмента, сейчас %(current)s.",
            "На тарифе %(tier)s не больше %(maximum)s активных сегментов, сейчас %(current)s.",
            "maximum",
        ),
        _("Или отключите ненужный сегмент."),
        title=_("Segments"),
        built=True,
    ),
    "trigger_chains": _Limit(
        "max_trigger_chains",
        ngettext_lazy(
            "На тарифе %(tier)s не больше %(maximum)s триггерной цепочки, сейчас %(current)s.",
            "На тарифе %(tier)s не больше %(maximum)s триггерных цепочек, сейчас %(current)s.",
            "maximum",
        ),
        _("Или отключите ненужную цепочку."),
        title=_("Trigger chains"),
        built=True,
    ),
}


@dataclass(frozen=True)
class TierOfferItem:
    """One line of what a client's tier offers: a limit (``limit``: the maximum, None for no
    limit) or a feature (``available``: the tier has it; ``upgrade``: else the name of the
    lowest tier that has it, or "" when none does)."""

    code: str
    title: Promise
    is_limit: bool
    available: bool
    limit: int | None = None
    upgrade: str = ""


def _lowest_tier(condition: Q) -> Tier | None:
    return Tier.objects.filter(condition).order_by("position", "pk").first()


def tier_has(*, client: Client, feature: str) -> bool:
    """Does the client's tier include ``feature`` (one of ``Tier.FEATURES``)?"""
    return client.tier.has_feature(feature)


def tier_unlocking(*, feature: str) -> Tier | None:
    """The lowest tier that includes ``feature``, or None when none does."""
    if feature not in Tier.FEATURES:
        raise ValueError(f"unknown tier feature {feature!r}")
    return _lowest_tier(Q(**{feature: True}))


def tier_require(*, client: Client, feature: str, context: str = "", hint: str = "") -> None:
    """Refuse unless the client's tier includes ``feature``.

    ``context`` is a sentence put before the rule's own ("Правило использует предиктивные
    оценки (churn_probability)."), ``hint`` one after it (what to do on this tier instead).
    """
    if tier_has(client=client, feature=feature):
        return
    tier = client.tier
    upgrade = tier_unlocking(feature=feature)
    label = FEATURES[feature]
    if upgrade is not None:
        where = label.available_from % {"tier": upgrade.name}
    else:
        where = str(label.in_no_tier)
    message = gettext("%(rule)s; у клиента тариф %(tier)s.") % {"rule": where, "tier": tier.name}
    raise TierLimitError(
        f"tier_feature_{feature}",
        " ".join(str(part) for part in (context, message, hint) if part),
        extra={"tier": tier.code, "required_tier": upgrade.code if upgrade else None},
    )


def tier_check_limit(*, client: Client, limit: str, current: int) -> None:
    """Refuse one more of ``limit`` (a key of :data:`LIMITS`) when the client already has
    ``current`` of them and its tier allows no more."""
    spec = LIMITS[limit]
    tier = client.tier
    maximum = getattr(tier, spec.field)
    if maximum is None or current < maximum:
        return
    more_allowed = Q(**{f"{spec.field}__isnull": True}) | Q(**{f"{spec.field}__gt": maximum})
    upgrade = _lowest_tier(more_allowed)
    if upgrade is None:
        more = gettext("Больше не предусмотрено ни одним тарифом.")
    elif getattr(upgrade, spec.field) is None:
        more = gettext("Без ограничения — с тарифа %(tier)s.") % {"tier": upgrade.name}
    else:
        more = gettext("До %(maximum)s — с тарифа %(tier)s.") % {
            "maximum": getattr(upgrade, spec.field),
            "tier": upgrade.name,
        }
    rule = spec.rule % {
        "tier": tier.name,
        "maximum": maximum,
        "current": current,
    }
    raise TierLimitError(
        f"tier_limit_{limit}",
        f"{rule} {more} {spec.hint}",
        extra={
            "tier": tier.code,
            "limit": maximum,
            "required_tier": upgrade.code if upgrade else None,
        },
    )


def tier_offer(*, client: Client) -> list[TierOfferItem]:
    """What the client's tier offers, limits first, among the things the platform has built
    (``built``); features the tier lacks come with the tier that unlocks them."""
    tier = client.tier
    items = [
        TierOfferItem(
            code=code,
            title=spec.title,
            is_limit=True,
            available=True,
            limit=getattr(tier, spec.field),
        )
        for code, spec in LIMITS.items()
        if spec.built
    ]
    for code, spec in FEATURES.items():
        if not spec.built:
            continue
        available = tier.has_feature(code)
        upgrade = None if available else tier_unlocking(feature=code)
        items.append(
            TierOfferItem(
                code=code,
                title=spec.title,
                is_limit=False,
                available=available,
                upgrade=upgrade.name if upgrade is not None else "",
            )
        )
    return items


def tier_offers(*, client: Client, code: str) -> bool:
    """Does the client's tier offer ``code`` (a key of :data:`LIMITS` or :data:`FEATURES`) now,
    as :func:`tier_offer` would list it as available: built, and a limit above zero or a feature
    the tier has. Reads the tier row only (for a menu shown on every page)."""
    if code in LIMITS:
        spec = LIMITS[code]
        return spec.built and getattr(client.tier, spec.field) != 0
    return FEATURES[code].built and client.tier.has_feature(code)
