"""The rule language: validation naming the bad node, exact members on a hand-built base,
properties (hypothesis) of validation and of the compiled query."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.models import Customer, Event, Order
from segments.models import CustomerScore
from segments.rules import (
    RuleError,
    RuleInvalid,
    rule_describe,
    rule_to_q,
    rule_uses_predictive,
    validate_rule,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def build_base(client, now: dt.datetime = NOW) -> dict[str, Customer]:
    """Four customers with known fields, orders, events and scores (c3 has no scores).

    c1 Москва, gold, age 35, tags [vip, b2b]; paid 1500 (10 d), 800 (40 d), 5000 (200 d),
       a refund (5 d); cart 3 d, visit 1 d; Champions / Retention, churn 0.1, CLV 9000
    c2 Казань, silver, age 22, no email; paid 3000 (100 d); cart 20 d;
       At Risk / Win-back, churn 0.8, CLV 500, at risk
    c3 Москва, no attributes, first seen 10 d ago; no orders; cart 1 d and 2 d; no scores
    c4 no city, gold, a key named "contains"; paid 100 (1 d), 200 (2 d);
       New / Onboarding, churn 0.3, CLV 300
    """

    def ago(days: float) -> dt.datetime:
        return now - dt.timedelta(days=days)

    spec = {
        "c1": {
            "city": "Москва",
            "email": "c1@shop.ru",
            "attributes": {"loyalty": "gold", "age": 35, "tags": ["vip", "b2b"]},
        },
        "c2": {"city": "Казань", "attributes": {"loyalty": "silver", "age": 22}},
        "c3": {"city": "Москва", "phone": "+79160000003", "first_seen": ago(10)},
        "c4": {"attributes": {"loyalty": "gold", "contains": "x"}},
    }
    customers = {}
    for external_id, fields in spec.items():
        fields.setdefault("first_seen", ago(400))
        customers[external_id] = Customer.objects.create(
            client=client, external_id=external_id, **fields
        )
    orders = [
        ("c1", 10, "1500", "paid"),
        ("c1", 40, "800", "paid"),
        ("c1", 200, "5000", "paid"),
        ("c1", 5, "900", "refunded"),
        ("c2", 100, "3000", "paid"),
        ("c4", 1, "100", "paid"),
        ("c4", 2, "200", "paid"),
    ]
    for i, (external_id, days, amount, status) in enumerate(orders):
        Order.objects.create(
            client=client,
            customer=customers[external_id],
            external_id=f"o{i}",
            placed_at=ago(days),
            amount=Decimal(amount),
            status=status,
        )
    events = [("c1", "cart", 3), ("c1", "visit", 1), ("c2", "cart", 20)]
    events += [("c3", "cart", 1), ("c3", "cart", 2)]
    for i, (external_id, event_type, days) in enumerate(events):
        Event.objects.create(
            client=client,
            customer=customers[external_id],
            external_id=f"e{i}",
            type=event_type,
            occurred_at=ago(days),
        )
    scores = {
        "c1": {
            "rfm_segment": "Champions",
            "lifecycle_stage": "Retention",
            "churn_probability": 0.1,
            "p_alive": 0.9,
            "predicted_clv": Decimal("9000"),
            "clv_percentile": 100,
            "r_score": 5,
            "frequency": 3,
            "monetary": Decimal("7300"),
        },
        "c2": {
            "rfm_segment": "At Risk",
            "lifecycle_stage": "Win-back",
            "churn_probability": 0.8,
            "p_alive": 0.2,
            "predicted_clv": Decimal("500"),
            "clv_percentile": 50,
            "r_score": 1,
            "frequency": 1,
            "monetary": Decimal("3000"),
            "at_risk": True,
        },
        "c4": {
            "rfm_segment": "New",
            "lifecycle_stage": "Onboarding",
            "churn_probability": 0.3,
            "p_alive": 0.7,
            "predicted_clv": Decimal("300"),
            "clv_percentile": 30,
            "r_score": 5,
            "frequency": 2,
            "monetary": Decimal("300"),
        },
    }
    for external_id, fields in scores.items():
        CustomerScore.objects.create(
            customer=customers[external_id], client=client, computed_at=now, **fields
        )
    return customers


@pytest.fixture
def base(client_a):
    return build_base(client_a)


def members(client, rule) -> set[str]:
    q = rule_to_q(rule, client, NOW)
    return set(Customer.objects.for_client(client).filter(q).values_list("external_id", flat=True))


def attr(name, op, value=None):
    node = {"attribute": name, "op": op}
    if value is not None:
        node["value"] = value
    return node


def score(name, op, value):
    return {"score": name, "op": op, "value": value}


# --------------------------------------------------------------------------------------------
# Exact members

LEAF_CASES = [
    (attr("city", "eq", "Москва"), {"c1", "c3"}),
    (attr("city", "ne", "Москва"), {"c2", "c4"}),
    (attr("city", "in", ["Москва", "Казань"]), {"c1", "c2", "c3"}),
    (attr("city", "exists", False), {"c4"}),
    (attr("email", "exists"), {"c1"}),
    (attr("email", "contains", "SHOP"), {"c1"}),
    (attr("first_seen", "within_days", 30), {"c3"}),
    (attr("first_seen", "lt", "2025-06-01"), {"c1", "c2", "c4"}),
    (attr("attributes.loyalty", "eq", "gold"), {"c1", "c4"}),
    (attr("attributes.loyalty", "ne", "gold"), {"c2", "c3"}),
    (attr("attributes.loyalty", "in", ["silver", "bronze"]), {"c2"}),
    (attr("attributes.age", "gte", 30), {"c1"}),
    (attr("attributes.age", "lt", 30), {"c2"}),
    (attr("attributes.age", "eq", "35"), set()),  # JSON types differ: "35" is not 35
    (attr("attributes.tags", "contains", "VIP"), {"c1"}),
    (attr("attributes.age", "exists"), {"c1", "c2"}),
    (attr("attributes.age", "exists", False), {"c3", "c4"}),
    (attr("attributes.contains", "eq", "x"), {"c4"}),  # a key named like a lookup
    (attr("attributes.contains", "exists"), {"c4"}),
    (score("churn_probability", "gte", 0.7), {"c2"}),
    (score("churn_probability", "lt", 0.5), {"c1", "c4"}),
    (score("rfm_segment", "in", ["Champions", "New"]), {"c1", "c4"}),
    (score("rfm_segment", "ne", "Champions"), {"c2", "c3", "c4"}),  # c3: no scores
    (score("lifecycle_stage", "eq", "Win-back"), {"c2"}),
    (score("at_risk", "eq", True), {"c2"}),
    (score("clv_percentile", "in", [30, 50]), {"c2", "c4"}),
    (score("r_score", "eq", 5), {"c1", "c4"}),
    (score("predicted_clv", "gt", 400), {"c1", "c2"}),
    ({"orders": {}}, {"c1", "c2", "c4"}),
    ({"orders": {"count": {"gte": 2}}}, {"c1", "c4"}),
    ({"orders": {"count": {"eq": 0}}}, {"c3"}),
    ({"orders": {"count": {"lt": 2}}}, {"c2", "c3"}),
    ({"orders": {"count": {"gte": 1}, "within_days": 30}}, {"c1", "c4"}),
    ({"orders": {"count": {"lt": 2}, "within_days": 30}}, {"c1", "c2", "c3"}),
    ({"orders": {"count": {"gte": 2, "lte": 2}}}, {"c4"}),
    ({"orders": {"amount_gte": 1000}}, {"c1", "c2"}),
    ({"orders": {"amount_lte": 150}}, {"c4"}),
    ({"orders": {"sum": {"gte": 5000}}}, {"c1"}),
    ({"orders": {"sum": {"lt": 1000}}}, {"c3", "c4"}),
    ({"orders": {"sum": {"gte": 1000}, "within_days": 30}}, {"c1"}),
    ({"orders": {"status": "refunded"}}, {"c1"}),
    ({"events": {}}, {"c1", "c2", "c3"}),
    ({"events": {"type": "cart", "within_days": 7}}, {"c1", "c3"}),
    ({"events": {"type": "cart", "count": {"gte": 2}, "within_days": 7}}, {"c3"}),
    ({"events": {"type": ["cart", "visit"], "count": {"gte": 2}, "within_days": 7}}, {"c1", "c3"}),
    ({"events": {"type": "cart", "count": {"eq": 0}, "within_days": 7}}, {"c2", "c4"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("rule", "expected"), LEAF_CASES)
def test_leaf_members_are_exact(base, client_a, rule, expected):
    assert validate_rule(rule) == []
    assert members(client_a, rule) == expected


@pytest.mark.django_db
def test_nested_groups(base, client_a):
    rule = {
        "all": [
            attr("city", "eq", "Москва"),
            {
                "any": [
                    {"orders": {"count": {"gte": 2}}},
                    {"events": {"type": "cart", "within_days": 7}},
                ]
            },
        ]
    }
    assert members(client_a, rule) == {"c1", "c3"}
    rule = {
        "any": [
            {"all": [score("rfm_segment", "eq", "Champions"), {"orders": {"within_days": 30}}]},
            {"none": [attr("city", "exists")]},
        ]
    }
    assert members(client_a, rule) == {"c1", "c4"}
    assert members(client_a, {"none": [score("churn_probability", "gte", 0.7)]}) == {
        "c1",
        "c3",
        "c4",
    }


@pytest.mark.django_db
def test_rule_sees_only_its_client(base, client_a, client_b):
    """Orders of another client's customer never count, even for a customer id from there."""
    other = Customer.objects.create(client=client_b, external_id="c1", city="Москва")
    Order.objects.create(
        client=client_b, customer=other, external_id="x", placed_at=days_ago(1), amount=1
    )
    assert members(client_b, {"orders": {"within_days": 30}}) == {"c1"}
    q = rule_to_q({"orders": {"count": {"gte": 4}}}, client_a, NOW)
    assert not Customer.objects.for_client(client_a).filter(q).exists()


@pytest.mark.django_db
def test_compiled_query_is_one_statement(client_a, django_assert_num_queries, base):
    rule = {
        "all": [
            attr("city", "eq", "Москва"),
            score("churn_probability", "lt", 0.5),
            {"orders": {"count": {"gte": 2}, "within_days": 365}},
            {"events": {"type": "cart", "within_days": 7}},
        ]
    }
    with django_assert_num_queries(1):
        assert members(client_a, rule) == {"c1"}


# --------------------------------------------------------------------------------------------
# Validation naming the node


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        (
            {"all": [attr("city", "eq", "a"), attr("city", "eq", "b"), {"orders": {"count": 2}}]},
            "all[2].orders.count",
        ),
        ({"all": [{"orders": {"count": {"gte": -1}}}]}, "all[0].orders.count.gte"),
        ({"all": [{"orders": {"count": {"about": 1}}}]}, "all[0].orders.count.about"),
        ({"any": [{"none": [score("churn_probability", "gte", 1.5)]}]}, "any[0].none[0].value"),
        ({"any": [score("rfm_segment", "in", ["Champions", "Kings"])]}, "any[0].value[1]"),
        ({"all": [attr("town", "eq", "x")]}, "all[0].attribute"),
        ({"all": [attr("city", "gt", "x")]}, "all[0].op"),
        ({"all": [attr("city", "eq")]}, "all[0].value"),
        ({"all": [attr("attributes.a__b", "eq", 1)]}, "all[0].attribute"),
        ({"all": []}, "all"),
        ({"all": [{"any": "x"}]}, "all[0].any"),
        ({"all": [1]}, "all[0]"),
        ({"all": [{"foo": 1}]}, "all[0]"),
        ({"all": [{"all": [attr("city", "eq", "x")], "any": []}]}, "all[0]"),
        ({"all": [attr("city", "eq", "x")], "extra": 1}, "extra"),
        ({"events": {"type": "Cart!"}}, "events.type"),
        ({"events": {"within_days": 0}}, "events.within_days"),
        ({"orders": {"status": "lost"}}, "orders.status"),
        ({"orders": {"amount_gte": "1000"}}, "orders.amount_gte"),
        ({"orders": {"sum": {"gte": 10}, "color": "red"}}, "orders.color"),
        (score("at_risk", "eq", 1), "value"),
        (score("clv_percentile", "gte", 2.5), "value"),
        (score("loyalty", "eq", 1), "score"),
        ("all", ""),
        # Dates PostgreSQL cannot take: an offset beyond ±15:59, month 13, other digits.
        (attr("first_seen", "lt", "2025-06-01T00:00:00+16:00"), "value"),
        (attr("first_seen", "lt", "2025-13-01"), "value"),
        (attr("first_seen", "lt", "٢٠٢٥-٠٦-٠١"), "value"),
    ],
)
def test_validation_names_the_bad_node(rule, path):
    errors = validate_rule(rule)
    assert [e.path for e in errors] == [path], errors
    assert errors[0].message


def test_every_error_is_reported():
    rule = {"all": [attr("town", "eq", "x"), {"orders": {"count": {"gte": -1}}}, {"any": []}]}
    assert [e.path for e in validate_rule(rule)] == [
        "all[0].attribute",
        "all[1].orders.count.gte",
        "all[2].any",
    ]


def test_size_and_depth_are_limited():
    deep: dict = attr("city", "eq", "x")
    for _ in range(10):
        deep = {"all": [deep]}
    assert any("вложенность" in e.message for e in validate_rule(deep))
    wide = {"any": [attr("city", "eq", str(i)) for i in range(300)]}
    errors = validate_rule(wide)
    assert len(errors) == 1
    assert "не больше 200" in errors[0].message


@pytest.mark.django_db
def test_invalid_rule_does_not_compile(client_a):
    with pytest.raises(RuleInvalid) as info:
        rule_to_q({"all": []}, client_a, NOW)
    assert info.value.errors == [RuleError("all", "пустая группа: нужно хотя бы одно условие")]


def test_predictive_scores_are_recognised():
    assert rule_uses_predictive({"all": [score("churn_probability", "gte", 0.5)]})
    assert rule_uses_predictive({"any": [{"none": [score("predicted_clv", "gt", 1)]}]})
    assert not rule_uses_predictive({"all": [score("rfm_segment", "eq", "Lost"), {"orders": {}}]})


def test_description_in_russian():
    rule = {
        "all": [
            attr("city", "eq", "Москва"),
            {
                "any": [
                    score("churn_probability", "gte", 0.7),
                    {"orders": {"count": {"gte": 2}, "within_days": 90, "amount_gte": 1000}},
                ]
            },
            {"none": [{"events": {"type": "cart", "within_days": 7}}]},
        ]
    }
    assert rule_describe(rule).splitlines() == [
        "Все условия:",
        "  • город = «Москва»",
        "  Любое из условий:",
        "    • вероятность оттока ≥ 0,7",
        "    • заказы (оплаченные, за последние 90 дн., каждый от 1\u202f000 ₽): количество ≥ 2",
        "  Ни одно из условий:",
        "    • события «cart» за последние 7 дн.: есть хотя бы одно",
    ]
    assert rule_describe({"all": []}).startswith("Правило с ошибками:\n• all: пустая группа")


# --------------------------------------------------------------------------------------------
# Properties

text = st.text(alphabet="абвгдеёжзabcdefgh", min_size=1, max_size=8)

attribute_leaves = st.one_of(
    st.builds(
        attr,
        st.sampled_from(["city", "email", "first_name", "source"]),
        st.sampled_from(["eq", "ne", "contains"]),
        text,
    ),
    st.builds(attr, st.just("city"), st.just("in"), st.lists(text, min_size=1, max_size=3)),
    st.builds(attr, st.sampled_from(["phone", "attributes.loyalty"]), st.just("exists")),
    st.builds(
        attr,
        st.sampled_from(["attributes.age", "attributes.x.y"]),
        st.sampled_from(["gt", "gte", "lt", "lte", "eq", "ne"]),
        st.integers(0, 100),
    ),
    st.builds(attr, st.just("first_seen"), st.just("within_days"), st.integers(1, 400)),
)
score_leaves = st.one_of(
    st.builds(
        score,
        st.sampled_from(["churn_probability", "p_alive"]),
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.floats(0, 1),
    ),
    st.builds(score, st.just("frequency"), st.sampled_from(["eq", "ne", "gte"]), st.integers(0, 9)),
    st.builds(
        score,
        st.just("rfm_segment"),
        st.just("in"),
        st.lists(st.sampled_from(["Champions", "Lost", "New"]), min_size=1, max_size=3),
    ),
    st.builds(score, st.just("at_risk"), st.just("eq"), st.booleans()),
)
counts = st.lists(
    st.tuples(st.sampled_from(["gt", "gte", "lt", "lte", "eq"]), st.integers(0, 5)),
    min_size=1,
    max_size=2,
    unique_by=lambda pair: pair[0],
).map(dict)
order_leaves = st.fixed_dictionaries(
    {},
    optional={
        "count": counts,
        "sum": st.builds(
            lambda op, v: {op: v}, st.sampled_from(["gte", "lt"]), st.integers(0, 9000)
        ),
        "within_days": st.integers(1, 365),
        "amount_gte": st.integers(0, 5000),
        "status": st.sampled_from(["paid", "refunded"]),
    },
).map(lambda spec: {"orders": spec})
event_leaves = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["cart", "visit"]), st.just(["cart", "visit"])),
        "count": counts,
        "within_days": st.integers(1, 60),
    },
).map(lambda spec: {"events": spec})
leaves = st.one_of(attribute_leaves, score_leaves, order_leaves, event_leaves)
valid_rules = st.recursive(
    leaves,
    lambda children: st.builds(
        lambda group, nodes: {group: nodes},
        st.sampled_from(["all", "any", "none"]),
        st.lists(children, min_size=1, max_size=3),
    ),
    max_leaves=12,
)


def node_paths(node, path=""):
    """(path, node) of every node of a valid rule."""
    yield path, node
    for group in ("all", "any", "none"):
        if group in node:
            here = f"{path}.{group}" if path else group
            for i, child in enumerate(node[group]):
                yield from node_paths(child, f"{here}[{i}]")


def replace_at(tree, path, new):
    if path == "":
        return new
    tree = copy.deepcopy(tree)
    parent, key = None, None
    node = tree
    for part in path.split("."):
        group, index = part.rstrip("]").split("[")
        parent, key = node[group], int(index)
        node = parent[key]
    parent[key] = new
    return tree


PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(rule=valid_rules)
def test_valid_rules_validate_and_compile_to_one_runnable_query(client_a, rule):
    assert validate_rule(rule) == []
    q = rule_to_q(rule, client_a, NOW)
    Customer.objects.for_client(client_a).filter(q).count()  # runs on PostgreSQL
    assert rule_describe(rule).count("\n") == sum(1 for _ in node_paths(rule)) - 1


CORRUPTIONS = {
    # corrupted node -> (replacement, the suffix its error path gets)
    "not_an_object": (lambda node: 42, ""),
    "unknown_key": (lambda node: {**node, "zzz": 1}, ".zzz"),
    "empty_group": (lambda node: {"any": []}, ".any"),
    "two_kinds": (lambda node: {"all": [node], "orders": {}}, ""),
}


@PROPERTY_SETTINGS
@given(data=st.data(), rule=valid_rules, corruption=st.sampled_from(sorted(CORRUPTIONS)))
def test_a_corrupted_node_is_reported_with_its_path(data, rule, corruption):
    path, node = data.draw(st.sampled_from(list(node_paths(rule))))
    make, suffix = CORRUPTIONS[corruption]
    broken = replace_at(rule, path, make(node))
    expected = (path + suffix).lstrip(".")
    assert [e.path for e in validate_rule(broken)] == [expected]


@PROPERTY_SETTINGS
@given(data=st.data(), rule=valid_rules)
def test_a_corrupted_leaf_value_is_reported_under_the_leaf(data, rule):
    leaves_at = [(p, n) for p, n in node_paths(rule) if not {"all", "any", "none"} & set(n)]
    path, node = data.draw(st.sampled_from(leaves_at))
    node = copy.deepcopy(node)
    if "orders" in node or "events" in node:
        kind = "orders" if "orders" in node else "events"
        node[kind]["within_days"] = -1
        suffix = f"{kind}.within_days"
    else:
        node["op"] = "between"
        suffix = "op"
    expected = f"{path}.{suffix}" if path else suffix
    assert [e.path for e in validate_rule(replace_at(rule, path, node))] == [expected]


# Set algebra: a random tree over leaves with known members on the hand-built base selects
# exactly what the same tree computes with Python sets.
ALL = {"c1", "c2", "c3", "c4"}
KNOWN_LEAVES = [(rule, expected) for rule, expected in LEAF_CASES]


def expected_members(tree) -> set[str]:
    for group in ("all", "any", "none"):
        if group in tree:
            parts = [expected_members(child) for child in tree[group]]
            if group == "all":
                return set.intersection(ALL, *parts)
            union = set().union(*parts)
            return union if group == "any" else ALL - union
    return dict((repr(r), e) for r, e in KNOWN_LEAVES)[repr(tree)]


known_trees = st.recursive(
    st.sampled_from([rule for rule, _ in KNOWN_LEAVES]),
    lambda children: st.builds(
        lambda group, nodes: {group: nodes},
        st.sampled_from(["all", "any", "none"]),
        st.lists(children, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(tree=known_trees)
def test_groups_combine_exactly_like_sets(base, client_a, tree):
    assert members(client_a, tree) == expected_members(tree)
