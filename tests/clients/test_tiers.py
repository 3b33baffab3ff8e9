"""The one tier rule (clients.tiers) over the tiers seeded by clients/migrations/0002:

| tier         | position | segments | chains | predictive omnichannel value_bidding cohorts | incrementality programmatic |
| Foundation   | 1        | 5        | 3      | no                                           | no                          |
| Advanced CVM | 2        | 25       | 10     | yes                                          | no                          |
| Enterprise   | 3        | —        | —      | yes                                          | yes                         |
"""  # noqa: E501

from __future__ import annotations

import pytest

from agency.errors import ServiceError
from clients.models import Tier
from clients.services import client_create
from clients.tiers import (
    FEATURES,
    TierLimitError,
    tier_check_limit,
    tier_has,
    tier_require,
)

UNLOCKED_BY = {
    "predictive": ("advanced", "Advanced CVM"),
    "omnichannel": ("advanced", "Advanced CVM"),
    "value_bidding": ("advanced", "Advanced CVM"),
    "cohorts": ("advanced", "Advanced CVM"),
    "incrementality": ("enterprise", "Enterprise"),
    "programmatic": ("enterprise", "Enterprise"),
}


def test_every_tier_flag_has_a_name_in_refusals():
    assert set(FEATURES) == set(Tier.FEATURES) == set(UNLOCKED_BY)


@pytest.mark.parametrize("feature", sorted(UNLOCKED_BY))
def test_each_feature_refused_on_foundation_naming_the_tier_that_unlocks_it(client_a, feature):
    code, name = UNLOCKED_BY[feature]
    assert not tier_has(client=client_a, feature=feature)
    with pytest.raises(TierLimitError) as info:
        tier_require(client=client_a, feature=feature)
    error = info.value
    assert isinstance(error, ServiceError)
    assert (error.status, error.code) == (403, f"tier_feature_{feature}")
    assert f"с тарифа {name}; у клиента тариф Foundation." in error.message
    assert error.message.startswith(FEATURES[feature].label)
    assert error.extra == {"tier": "foundation", "required_tier": code}
    assert error.as_dict()["required_tier"] == code


@pytest.mark.parametrize("feature", sorted(UNLOCKED_BY))
def test_each_feature_allowed_from_its_tier_on(db, feature):
    code, _name = UNLOCKED_BY[feature]
    enterprise = client_create(name="Эпсилон", tier_code="enterprise")
    unlocking = client_create(name="Дельта", tier_code=code)
    for client in (enterprise, unlocking):
        assert tier_has(client=client, feature=feature)
        tier_require(client=client, feature=feature)  # no refusal


def test_advanced_is_refused_enterprise_features(client_b):
    with pytest.raises(TierLimitError) as info:
        tier_require(client=client_b, feature="programmatic")
    assert info.value.message == (
        "Programmatic / DMP-экспорт доступен с тарифа Enterprise; у клиента тариф Advanced CVM."
    )


def test_the_unlocking_tier_is_read_from_the_tier_rows(client_a):
    Tier.objects.filter(code="advanced").update(name="Продвинутый", cohorts=False)
    Tier.objects.filter(code="enterprise").update(name="Корпоративный")
    with pytest.raises(TierLimitError) as info:
        tier_require(client=client_a, feature="cohorts")
    assert "Когортный анализ доступен с тарифа Корпоративный" in info.value.message
    assert info.value.extra["required_tier"] == "enterprise"
    Tier.objects.update(cohorts=False)
    with pytest.raises(TierLimitError) as info:
        tier_require(client=client_a, feature="cohorts")
    assert "не входит ни в один тариф агентства" in info.value.message
    assert info.value.extra["required_tier"] is None


def test_context_and_hint_surround_the_rule(client_a):
    with pytest.raises(TierLimitError) as info:
        tier_require(client=client_a, feature="predictive", context="Так нельзя.", hint="Иначе.")
    assert info.value.message == (
        "Так нельзя. Предиктивные сегменты доступны с тарифа Advanced CVM; "
        "у клиента тариф Foundation. Иначе."
    )


def test_trigger_chain_limit_names_the_next_tier_and_its_limit(client_a, client_b):
    tier_check_limit(client=client_a, limit="trigger_chains", current=2)  # the third is fine
    with pytest.raises(TierLimitError) as info:
        tier_check_limit(client=client_a, limit="trigger_chains", current=3)
    error = info.value
    assert (error.status, error.code) == (403, "tier_limit_trigger_chains")
    assert error.message.startswith("На тарифе Foundation не больше 3 триггерных цепочек")
    assert "До 10 — с тарифа Advanced CVM." in error.message
    assert error.extra == {"tier": "foundation", "limit": 3, "required_tier": "advanced"}
    with pytest.raises(TierLimitError) as info:
        tier_check_limit(client=client_b, limit="segments", current=25)
    assert "Без ограничения — с тарифа Enterprise." in info.value.message
    enterprise = client_create(name="Эпсилон", tier_code="enterprise")
    tier_check_limit(client=enterprise, limit="segments", current=10_000)  # no limit


def test_a_limit_no_tier_raises_says_so(client_a):
    Tier.objects.update(max_trigger_chains=3)
    with pytest.raises(TierLimitError) as info:
        tier_check_limit(client=client_a, limit="trigger_chains", current=3)
    assert "Больше не предусмотрено ни одним тарифом." in info.value.message
    assert info.value.extra["required_tier"] is None


def test_an_unknown_feature_is_a_programming_error(client_a):
    with pytest.raises(ValueError, match="unknown tier feature"):
        tier_require(client=client_a, feature="teleportation")
