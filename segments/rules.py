"""The rule language of rule segments: a small JSON tree, validated, described and compiled.

A rule is one node; a node is a group or a leaf.

Groups nest: ``{"all": [node, ...]}`` (every condition), ``{"any": [...]}`` (at least one),
``{"none": [...]}`` (not one of them). A group has at least one node.

Leaves:

- customer fields and attributes::

    {"attribute": "city", "op": "eq", "value": "Москва"}
    {"attribute": "attributes.loyalty_level", "op": "in", "value": ["gold", "silver"]}

  ``attribute`` is a Customer field (``CUSTOMER_FIELDS``) or ``attributes.<key>`` (a key of the
  customer's ``attributes`` JSON, nested keys as ``attributes.a.b``). Ops: ``eq``, ``ne``,
  ``in`` (a list), ``contains`` (case-insensitive substring; of the JSON text for a list
  attribute), ``exists`` (``value`` true/false, default true: a text field is not blank, a key is
  present); on ``first_seen`` and attribute keys also ``gt``, ``gte``, ``lt``, ``lte``, and on
  ``first_seen`` ``within_days`` (first seen during the last N days). ``eq`` is exact (case and,
  for attribute keys, JSON type: ``"5"`` is not ``5``); ``ne`` includes customers without the
  key.

- scores of the latest scoring run (``CustomerScore``)::

    {"score": "churn_probability", "op": "gte", "value": 0.7}
    {"score": "rfm_segment", "op": "in", "value": ["Champions", "Loyal"]}

  Numeric scores take ``gt``, ``gte``, ``lt``, ``lte``, ``eq``, ``ne``, ``in``; ``rfm_segment``
  and ``lifecycle_stage`` take ``eq``, ``ne``, ``in`` with known names; ``at_risk`` takes
  ``eq`` with true/false. A customer without scores matches no positive score condition (and so
  every ``ne`` and every ``none`` of them).

- orders, counted per customer::

    {"orders": {"count": {"gte": 2}, "within_days": 90, "amount_gte": 1000}}

  Orders of the customer with ``status`` (default ``paid``) placed during the last
  ``within_days`` days (all time without it), each of at least ``amount_gte`` / at most
  ``amount_lte`` roubles; ``count`` and ``sum`` (their total) compare with ``gt``, ``gte``,
  ``lt``, ``lte``, ``eq`` (several ops are a range). Neither given: at least one such order.
  ``{"count": {"eq": 0}}`` are customers without such orders.

- events, counted per customer::

    {"events": {"type": "cart", "count": {"gte": 1}, "within_days": 7}}

  ``type`` is one type or a list (any type without it); ``count`` and ``within_days`` as for
  orders.

:func:`validate_rule` returns every problem as a :class:`RuleError` whose ``path`` names the
node, e.g. ``all[2].orders.count``; :func:`rule_to_q` compiles a valid rule into one ``Q`` over
``Customer`` (subqueries for orders and events, the ``score`` relation for scores), to be used
on a queryset already scoped to the client; :func:`rule_describe` renders it in Russian.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.errors import ServiceError
from agency.parsers import parse_moment as read_moment
from clients.models import EVENT_TYPE_RE, Client, Event, Order

from . import lifecycle, rfm
from .labels import lifecycle_stage_label, rfm_segment_label
from .models import CustomerScore

GROUPS: tuple[str, ...] = ("all", "any", "none")
LEAVES: tuple[str, ...] = ("attribute", "score", "orders", "events")

MAX_DEPTH = 8
MAX_NODES = 200
MAX_LIST = 1000
MAX_TEXT = 500
MAX_DAYS = 36_500

#: Customer fields a rule may test, and their kind.
CUSTOMER_FIELDS: dict[str, str] = {
    "external_id": "text",
    "email": "text",
    "phone": "text",
    "first_name": "text",
    "last_name": "text",
    "city": "text",
    "source": "text",
    "first_seen": "datetime",
}
ATTRIBUTES_PREFIX = "attributes."
ATTRIBUTE_KEY_RE = re.compile(r"^(?!.*__)[A-Za-z0-9_\-]{1,64}$")
MAX_ATTRIBUTE_DEPTH = 3

TEXT_OPS = ("eq", "ne", "in", "contains", "exists")
COMPARE_OPS = ("gt", "gte", "lt", "lte")
DATETIME_OPS = (*COMPARE_OPS, "within_days", "exists")
JSON_OPS = (*TEXT_OPS, *COMPARE_OPS)


@dataclass(frozen=True)
class ScoreField:
    kind: str  # "int", "number", "choice", "bool"
    label: Promise
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    predictive: bool = False  # from the CLV/churn models (tier feature ``predictive``)


SCORE_FIELDS: dict[str, ScoreField] = {
    "recency_days": ScoreField(
        "int", gettext_lazy("давность последней покупки, дней"), (0, math.inf)
    ),
    "frequency": ScoreField("int", gettext_lazy("заказов"), (0, math.inf)),
    "monetary": ScoreField("number", gettext_lazy("сумма покупок, ₽"), (0, math.inf)),
    "r_score": ScoreField("int", gettext_lazy("оценка R"), (1, 5)),
    "f_score": ScoreField("int", gettext_lazy("оценка F"), (1, 5)),
    "m_score": ScoreField("int", gettext_lazy("оценка M"), (1, 5)),
    "rfm_segment": ScoreField("choice", gettext_lazy("RFM-сегмент"), choices=rfm.SEGMENTS),
    "lifecycle_stage": ScoreField(
        "choice", gettext_lazy("стадия жизненного цикла"), choices=lifecycle.STAGES
    ),
    "at_risk": ScoreField("bool", gettext_lazy("в зоне риска")),
    "p_alive": ScoreField(
        "number", gettext_lazy("вероятность, что покупатель активен"), (0, 1), predictive=True
    ),
    "churn_probability": ScoreField(
        "number", gettext_lazy("вероятность оттока"), (0, 1), predictive=True
    ),
    "expected_purchases_90d": ScoreField(
        "number", gettext_lazy("ожидаемых покупок за 90 дней"), (0, math.inf), predictive=True
    ),
    "expected_order_value": ScoreField(
        "number", gettext_lazy("ожидаемый средний чек, ₽"), (0, math.inf), predictive=True
    ),
    "predicted_clv": ScoreField(
        "number", gettext_lazy("прогноз CLV, ₽"), (0, math.inf), predictive=True
    ),
    "clv_percentile": ScoreField("int", gettext_lazy("перцентиль CLV"), (1, 100), predictive=True),
}
SCORE_OPS: dict[str, tuple[str, ...]] = {
    "int": ("gt", "gte", "lt", "lte", "eq", "ne", "in"),
    "number": ("gt", "gte", "lt", "lte", "eq", "ne", "in"),
    "choice": ("eq", "ne", "in"),
    "bool": ("eq",),
}

COUNT_OPS = ("gt", "gte", "lt", "lte", "eq")
ORDER_KEYS = ("count", "sum", "within_days", "amount_gte", "amount_lte", "status")
EVENT_KEYS = ("type", "count", "within_days")


@dataclass(frozen=True)
class RuleError:
    """A problem of one node: ``path`` names it (``all[2].orders.count``; empty: the root)."""

    path: str
    message: str

    def __str__(self) -> str:
        path = self.path or _("правило")
        return f"{path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class RuleInvalid(ServiceError, ValueError):
    """A rule with errors, each naming its node (``errors`` in the JSON body)."""

    default_code = "invalid_definition"

    def __init__(self, errors: list[RuleError]):
        super().__init__(message="; ".join(str(e) for e in errors))
        self.errors = errors

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "errors": [e.as_dict() for e in self.errors]}


# --------------------------------------------------------------------------------------------
# Validation


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _is_days(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= MAX_DAYS


def parse_moment(value: Any, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """An ISO date (midnight in ``tz``) or date-time (naive: in ``tz``), or None; read by
    ``agency.parsers.parse_moment`` (impossible dates, offsets beyond ±15:59: None)."""
    try:
        return read_moment(value, tz or dt.UTC)
    except ValueError:
        return None


class _Validator:
    def __init__(self) -> None:
        self.errors: list[RuleError] = []
        self.nodes = 0

    def error(self, path: str, message: str) -> None:
        self.errors.append(RuleError(path, message))

    def node(self, node: Any, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.error(path, _("слишком много условий: не больше %(n)s") % {"n": MAX_NODES})
        if self.nodes > MAX_NODES:
            return
        if not isinstance(node, dict):
            self.error(path, _("условие — JSON-объект"))
            return
        kinds = [k for k in (*GROUPS, *LEAVES) if k in node]
        if not kinds:
            self.error(
                path,
                _("неизвестное условие: нужен один из ключей %(keys)s")
                % {"keys": ", ".join((*GROUPS, *LEAVES))},
            )
            return
        if len(kinds) > 1:
            message = _("в одном условии несколько видов: %(kinds)s") % {"kinds": ", ".join(kinds)}
            self.error(path, message)
            return
        kind = kinds[0]
        if kind in GROUPS:
            self.group(node, kind, path, depth)
        else:
            getattr(self, kind)(node, path)

    def unknown_keys(self, node: dict, allowed: Iterable[str], path: str) -> None:
        for key in node:
            if key not in allowed:
                self.error(_join(path, str(key)), _("неизвестный ключ"))

    def group(self, node: dict, kind: str, path: str, depth: int) -> None:
        self.unknown_keys(node, (kind,), path)
        here = _join(path, kind)
        children = node[kind]
        if not isinstance(children, list):
            self.error(here, _("ожидается список условий"))
            return
        if not children:
            self.error(here, _("пустая группа: нужно хотя бы одно условие"))
            return
        if depth >= MAX_DEPTH:
            message = _("слишком глубокая вложенность: не больше %(n)s уровней") % {"n": MAX_DEPTH}
            self.error(here, message)
            return
        for i, child in enumerate(children):
            self.node(child, f"{here}[{i}]", depth + 1)

    # leaves ---------------------------------------------------------------------------------

    def attribute(self, node: dict, path: str) -> None:
        self.unknown_keys(node, ("attribute", "op", "value"), path)
        name = node["attribute"]
        ops: tuple[str, ...]
        if not isinstance(name, str):
            self.error(_join(path, "attribute"), _("ожидается имя поля"))
            return
        if name.startswith(ATTRIBUTES_PREFIX):
            keys = name[len(ATTRIBUTES_PREFIX) :].split(".")
            if len(keys) > MAX_ATTRIBUTE_DEPTH or not all(ATTRIBUTE_KEY_RE.match(k) for k in keys):
                self.error(
                    _join(path, "attribute"),
                    _(
                        "ключ атрибута: латиница, цифры, _ и - (без «__»), до 64 знаков; "
                        "вложенность до %(depth)s (attributes.a.b)"
                    )
                    % {"depth": MAX_ATTRIBUTE_DEPTH},
                )
                return
            field_kind, ops = "json", JSON_OPS
        elif name in CUSTOMER_FIELDS:
            field_kind = CUSTOMER_FIELDS[name]
            ops = DATETIME_OPS if field_kind == "datetime" else TEXT_OPS
        else:
            self.error(
                _join(path, "attribute"),
                _(
                    "неизвестное поле «%(name)s»: поля покупателя — %(fields)s; "
                    "ключи атрибутов — attributes.<ключ>"
                )
                % {"name": name, "fields": ", ".join(CUSTOMER_FIELDS)},
            )
            return
        op = node.get("op")
        if op not in ops:
            self.error(_join(path, "op"), _("операция: одна из %(ops)s") % {"ops": ", ".join(ops)})
            return
        value_path = _join(path, "value")
        if op == "exists":
            if "value" in node and not isinstance(node["value"], bool):
                self.error(value_path, _("для exists значение true или false"))
            return
        if "value" not in node:
            self.error(value_path, _("нет значения"))
            return
        value = node["value"]
        if field_kind == "datetime":
            if op == "within_days":
                if not _is_days(value):
                    self.error(value_path, _("число дней от 1 до %(n)s") % {"n": MAX_DAYS})
            elif parse_moment(value) is None:
                self.error(value_path, _("дата ГГГГ-ММ-ДД или дата-время ISO 8601"))
            return
        if op == "in":
            self.value_list(value, value_path, field_kind)
        elif op == "contains":
            self.text(value, value_path)
        elif op in COMPARE_OPS:
            if not (_is_number(value) or isinstance(value, str)):
                self.error(value_path, _("ожидается число или строка"))
            elif isinstance(value, str):
                self.text(value, value_path)
        elif field_kind == "text":
            self.text(value, value_path)
        elif not _is_scalar(value):
            self.error(value_path, _("ожидается строка, число или true/false"))
        elif isinstance(value, str):
            self.text(value, value_path)

    def text(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.error(path, _("ожидается строка"))
        elif not value:
            self.error(path, _("пустая строка"))
        elif len(value) > MAX_TEXT:
            self.error(path, _("не длиннее %(n)s знаков") % {"n": MAX_TEXT})

    def value_list(self, value: Any, path: str, field_kind: str) -> None:
        if not isinstance(value, list) or not value:
            self.error(path, _("ожидается непустой список значений"))
            return
        if len(value) > MAX_LIST:
            self.error(path, _("не больше %(n)s значений") % {"n": MAX_LIST})
            return
        for i, item in enumerate(value):
            if field_kind == "text":
                self.text(item, f"{path}[{i}]")
            elif not _is_scalar(item):
                self.error(f"{path}[{i}]", _("ожидается строка, число или true/false"))

    def score(self, node: dict, path: str) -> None:
        self.unknown_keys(node, ("score", "op", "value"), path)
        name = node["score"]
        field = SCORE_FIELDS.get(name) if isinstance(name, str) else None
        if field is None:
            message = _("оценка: одна из %(scores)s") % {"scores": ", ".join(SCORE_FIELDS)}
            self.error(_join(path, "score"), message)
            return
        op = node.get("op")
        ops = SCORE_OPS[field.kind]
        if op not in ops:
            message = _("для %(score)s операция: одна из %(ops)s") % {
                "score": name,
                "ops": ", ".join(ops),
            }
            self.error(_join(path, "op"), message)
            return
        value_path = _join(path, "value")
        if "value" not in node:
            self.error(value_path, _("нет значения"))
            return
        value = node["value"]
        if op == "in":
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                message = _("ожидается непустой список (до %(n)s значений)") % {"n": MAX_LIST}
                self.error(value_path, message)
                return
            for i, item in enumerate(value):
                self.score_value(field, item, f"{value_path}[{i}]")
        else:
            self.score_value(field, value, value_path)

    def score_value(self, field: ScoreField, value: Any, path: str) -> None:
        if field.kind == "bool":
            if not isinstance(value, bool):
                self.error(path, _("ожидается true или false"))
        elif field.kind == "choice":
            if value not in field.choices:
                known = ", ".join(field.choices)
                message = _("неизвестное значение %(value)r: одно из %(known)s") % {
                    "value": value,
                    "known": known,
                }
                self.error(path, message)
        elif not _is_number(value) or (field.kind == "int" and not float(value).is_integer()):
            integer = field.kind == "int"
            self.error(path, _("ожидается целое число") if integer else _("ожидается число"))
        elif field.bounds and not field.bounds[0] <= value <= field.bounds[1]:
            low, high = field.bounds
            if math.isinf(high):
                self.error(path, _("от %(low)s") % {"low": _fmt(low)})
            else:
                bounds = {"low": _fmt(low), "high": _fmt(high)}
                self.error(path, _("от %(low)s до %(high)s") % bounds)

    def counts(self, spec: Any, path: str, *, integer: bool) -> None:
        if not isinstance(spec, dict) or not spec:
            message = _('условие сравнения, напр. {"gte": 2}: %(ops)s') % {
                "ops": ", ".join(COUNT_OPS)
            }
            self.error(path, message)
            return
        for op, value in spec.items():
            here = _join(path, str(op))
            if op not in COUNT_OPS:
                self.error(here, _("операция: одна из %(ops)s") % {"ops": ", ".join(COUNT_OPS)})
            elif integer and not (_is_int(value) and value >= 0):
                self.error(here, _("ожидается целое число ≥ 0"))
            elif not integer and not (_is_number(value) and value >= 0):
                self.error(here, _("ожидается число ≥ 0"))

    def window(self, spec: dict, path: str) -> None:
        if "within_days" in spec and not _is_days(spec["within_days"]):
            message = _("число дней от 1 до %(n)s") % {"n": MAX_DAYS}
            self.error(_join(path, "within_days"), message)
        if "count" in spec:
            self.counts(spec["count"], _join(path, "count"), integer=True)

    def orders(self, node: dict, path: str) -> None:
        self.unknown_keys(node, ("orders",), path)
        here = _join(path, "orders")
        spec = node["orders"]
        if not isinstance(spec, dict):
            self.error(here, _("ожидается объект: count, sum, within_days, amount_gte, ..."))
            return
        self.unknown_keys(spec, ORDER_KEYS, here)
        self.window(spec, here)
        if "sum" in spec:
            self.counts(spec["sum"], _join(here, "sum"), integer=False)
        for key in ("amount_gte", "amount_lte"):
            if key in spec and not (_is_number(spec[key]) and spec[key] >= 0):
                self.error(_join(here, key), _("ожидается сумма ≥ 0"))
        if "status" in spec and spec["status"] not in Order.Status.values:
            self.error(
                _join(here, "status"),
                _("статус заказа: один из %(statuses)s")
                % {"statuses": ", ".join(Order.Status.values)},
            )

    def events(self, node: dict, path: str) -> None:
        self.unknown_keys(node, ("events",), path)
        here = _join(path, "events")
        spec = node["events"]
        if not isinstance(spec, dict):
            self.error(here, _("ожидается объект: type, count, within_days"))
            return
        self.unknown_keys(spec, EVENT_KEYS, here)
        self.window(spec, here)
        if "type" in spec:
            types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            if not types or len(types) > MAX_LIST:
                self.error(_join(here, "type"), _("тип события или непустой список типов"))
            for t in types:
                if not (isinstance(t, str) and re.match(EVENT_TYPE_RE, t)):
                    self.error(
                        _join(here, "type"),
                        _("тип события %(type)r: латиница в нижнем регистре, цифры, _")
                        % {"type": t},
                    )
                    break


def validate_rule(tree: Any) -> list[RuleError]:
    """Every problem of the rule, each naming its node; an empty list means valid."""
    validator = _Validator()
    validator.node(tree, "", 0)
    return validator.errors


def iter_leaves(tree: Any) -> Iterable[dict]:
    """The leaves of a (valid) rule, depth first."""
    if not isinstance(tree, dict):
        return
    for group in GROUPS:
        if group in tree and isinstance(tree[group], list):
            for child in tree[group]:
                yield from iter_leaves(child)
            return
    yield tree


def rule_score_fields(tree: Any) -> set[str]:
    """Names of the scores a rule tests."""
    return {leaf["score"] for leaf in iter_leaves(tree) if isinstance(leaf.get("score"), str)}


def rule_uses_predictive(tree: Any) -> bool:
    """Does the rule test a score of the CLV/churn models (tier feature ``predictive``)?"""
    return any(
        SCORE_FIELDS[name].predictive for name in rule_score_fields(tree) if name in SCORE_FIELDS
    )


# --------------------------------------------------------------------------------------------
# Compilation

_COMPARE_AT_ZERO = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
}
_LOOKUP = {"gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte", "eq": "exact", "in": "in"}


def _all(qs: Iterable[Q]) -> Q:
    return reduce(lambda a, b: a & b, qs, Q())


def _any(qs: list[Q]) -> Q:
    return reduce(lambda a, b: a | b, qs)


class _Compiler:
    def __init__(self, client: Client, now: dt.datetime):
        self.client = client
        self.client_id = client.pk
        self.now = now
        self.tz = getattr(client, "tzinfo", None)

    def node(self, node: dict) -> Q:
        for group in GROUPS:
            if group in node:
                children = [self.node(child) for child in node[group]]
                if group == "all":
                    return _all(children)
                either = _any(children)
                return either if group == "any" else ~either
        if "attribute" in node:
            return self.attribute(node)
        if "score" in node:
            return self.score(node)
        if "orders" in node:
            return self.orders(node["orders"])
        return self.events(node["events"])

    def attribute(self, node: dict) -> Q:
        name, op, value = node["attribute"], node["op"], node.get("value", True)
        if name.startswith(ATTRIBUTES_PREFIX):
            return self.json_key(name[len(ATTRIBUTES_PREFIX) :].split("."), op, value)
        if CUSTOMER_FIELDS[name] == "datetime":
            if op == "exists":
                return Q(**{f"{name}__isnull": not value})
            if op == "within_days":
                return Q(**{f"{name}__gte": self.now - dt.timedelta(days=value)})
            return Q(**{f"{name}__{op}": parse_moment(value, self.tz)})
        # Text fields are NOT NULL, blank when unknown.
        if op == "exists":
            return ~Q(**{name: ""}) if value else Q(**{name: ""})
        if op == "contains":
            return Q(**{f"{name}__icontains": value})
        if op == "ne":
            return ~Q(**{name: value})
        return Q(**{f"{name}__{_LOOKUP[op]}": value})

    def json_key(self, keys: list[str], op: str, value: Any) -> Q:
        """Every look-up ends with an explicit lookup name, so a key named like a lookup
        (``contains``, ``in``) stays a key. Guarded by "the key is present", the result is never
        NULL, so ``ne`` and ``none`` include customers without the key."""
        parent = "__".join(["attributes", *keys[:-1]])
        present = Q(**{f"{parent}__has_key": keys[-1]})
        if op == "exists":
            return present if value else ~present
        lookup = "icontains" if op == "contains" else _LOOKUP.get(op, "exact")
        matched = present & Q(**{"__".join(["attributes", *keys, lookup]): value})
        return ~matched if op == "ne" else matched

    def score(self, node: dict) -> Q:
        name, op, value = node["score"], node["op"], node["value"]
        # Always a (semi- or anti-) join on its own, never a condition over the score relation:
        # negated (``ne``, or under ``none``) and OR-ed with another score condition, Django's
        # join dropped customers without scores (hypothesis found it in
        # tests/segments/test_rules.py).
        if op == "ne":
            scored = CustomerScore.objects.filter(customer_id=OuterRef("pk"), **{name: value})
            return ~Q(Exists(scored))
        scored = CustomerScore.objects.filter(
            customer_id=OuterRef("pk"), **{f"{name}__{_LOOKUP[op]}": value}
        )
        return Q(Exists(scored))

    def counted(self, base: Any, count: dict | None, total: dict | None, field: str = "") -> Q:
        """Customers whose rows in ``base`` (correlated to the customer) meet the conditions.

        Existence alone is an EXISTS (a semi-join, or an anti-join under ``none``); counts and
        sums are one grouped probe per customer on the (client, customer, time) index. A
        condition true for zero rows (``count lt 2``) is the complement of its negation over the
        customers who have rows, so customers without any row are included.
        """
        count = count or {}
        total = total or {}
        if not total and count in ({}, {"gte": 1}, {"gt": 0}):
            return Q(Exists(base))
        if not total and count in ({"eq": 0}, {"lt": 1}, {"lte": 0}):
            return ~Q(Exists(base))
        having = _all(Q(**{f"_n__{_LOOKUP[op]}": v}) for op, v in count.items())
        having &= _all(Q(**{f"_s__{_LOOKUP[op]}": v}) for op, v in total.items())
        true_at_zero = all(_COMPARE_AT_ZERO[op](0, v) for op, v in count.items()) and all(
            _COMPARE_AT_ZERO[op](0, v) for op, v in total.items()
        )
        grouped = base.values("customer_id").annotate(_n=Count("pk"))
        if total:
            grouped = grouped.annotate(_s=Sum(field))
        if true_at_zero:
            return ~Q(Exists(grouped.filter(~having)))
        return Q(Exists(grouped.filter(having)))

    def window(self, spec: dict, time_field: str) -> dict[str, Any]:
        if "within_days" in spec:
            return {f"{time_field}__gte": self.now - dt.timedelta(days=spec["within_days"])}
        return {}

    def orders(self, spec: dict) -> Q:
        filters = {
            "client_id": self.client_id,
            "customer_id": OuterRef("pk"),
            "status": spec.get("status", Order.Status.PAID),
            **self.window(spec, "placed_at"),
        }
        if "amount_gte" in spec:
            filters["amount__gte"] = spec["amount_gte"]
        if "amount_lte" in spec:
            filters["amount__lte"] = spec["amount_lte"]
        base = Order.objects.filter(**filters).order_by()
        return self.counted(base, spec.get("count"), spec.get("sum"), "amount")

    def events(self, spec: dict) -> Q:
        filters: dict[str, Any] = {
            "client_id": self.client_id,
            "customer_id": OuterRef("pk"),
            **self.window(spec, "occurred_at"),
        }
        if "type" in spec:
            types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            filters["type__in"] = types
        base = Event.objects.filter(**filters).order_by()
        return self.counted(base, spec.get("count"), None)


def rule_to_q(tree: Any, client: Client, now: dt.datetime) -> Q:
    """One ``Q`` over Customer for a valid rule (raises :class:`RuleInvalid` otherwise).

    Apply it to a queryset already scoped to ``client``: the order and event subqueries are
    scoped to it too, the score relation follows the customer. ``now`` anchors the day windows.
    """
    errors = validate_rule(tree)
    if errors:
        raise RuleInvalid(errors)
    return _Compiler(client, now).node(tree)


# --------------------------------------------------------------------------------------------
# Description in Russian

FIELD_LABELS: dict[str, Promise] = {
    "external_id": gettext_lazy("внешний id"),
    "email": gettext_lazy("email"),
    "phone": gettext_lazy("телефон"),
    "first_name": gettext_lazy("имя"),
    "last_name": gettext_lazy("фамилия"),
    "city": gettext_lazy("город"),
    "source": gettext_lazy("источник"),
    "first_seen": gettext_lazy("впервые замечен"),
}
GROUP_LABELS = {
    "all": gettext_lazy("Все условия:"),
    "any": gettext_lazy("Любое из условий:"),
    "none": gettext_lazy("Ни одно из условий:"),
}
OP_SIGNS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
ORDER_STATUS_LABELS = {
    "paid": gettext_lazy("оплаченные"),
    "refunded": gettext_lazy("возвраты"),
    "cancelled": gettext_lazy("отменённые"),
}
#: Score values shown by name (the codes stay in the rule).
CHOICE_LABELS = {"rfm_segment": rfm_segment_label, "lifecycle_stage": lifecycle_stage_label}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return _("да") if value else _("нет")
    if _is_int(value) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}".replace(",", "\u202f")
    if _is_number(value):
        return f"{value:g}".replace(".", ",")
    if isinstance(value, str):
        return _("«%(text)s»") % {"text": value}
    return str(value)


def _fmt_list(values: list) -> str:
    return ", ".join(_fmt(v) for v in values)


def _comparisons(spec: dict, unit: str = "") -> str:
    return ", ".join(f"{OP_SIGNS[op]} {_fmt(v)}{unit}" for op, v in spec.items())


def _describe_leaf(node: dict) -> str:
    if "attribute" in node:
        name, op = node["attribute"], node["op"]
        if name.startswith(ATTRIBUTES_PREFIX):
            label = _("атрибут «%(key)s»") % {"key": name[len(ATTRIBUTES_PREFIX) :]}
        else:
            label = str(FIELD_LABELS[name])
        value = node.get("value", True)
        if op == "exists":
            return (_("%(label)s: заполнено") if value else _("%(label)s: не заполнено")) % {
                "label": label
            }
        if op == "in":
            return _("%(label)s — одно из: %(values)s") % {
                "label": label,
                "values": _fmt_list(value),
            }
        if op == "contains":
            return _("%(label)s содержит %(value)s") % {"label": label, "value": _fmt(value)}
        if op == "within_days":
            return _("%(label)s за последние %(days)s дн.") % {"label": label, "days": _fmt(value)}
        return f"{label} {OP_SIGNS[op]} {_fmt(value)}"
    if "score" in node:
        field = SCORE_FIELDS[node["score"]]
        op, value = node["op"], node["value"]
        named = CHOICE_LABELS.get(node["score"])
        if op == "in":
            values = ", ".join(named(v) for v in value) if named else _fmt_list(value)
            return _("%(label)s — одно из: %(values)s") % {"label": field.label, "values": values}
        shown = named(value) if named else _fmt(value)
        return f"{field.label} {OP_SIGNS[op]} {shown}"
    if "orders" in node:
        spec = node["orders"]
        details = [str(ORDER_STATUS_LABELS[spec.get("status", "paid")])]
        if "within_days" in spec:
            details.append(_("за последние %(days)s дн.") % {"days": _fmt(spec["within_days"])})
        if "amount_gte" in spec:
            details.append(_("каждый от %(amount)s ₽") % {"amount": _fmt(spec["amount_gte"])})
        if "amount_lte" in spec:
            details.append(_("каждый до %(amount)s ₽") % {"amount": _fmt(spec["amount_lte"])})
        what = _("заказы (%(details)s)") % {"details": ", ".join(details)}
        return what + ": " + _window_conditions(spec, money=True)
    spec = node["events"]
    types = spec.get("type")
    if types is None:
        what = _("события любого типа")
    else:
        types = types if isinstance(types, list) else [types]
        what = _("события %(types)s") % {"types": _fmt_list(types)}
    if "within_days" in spec:
        what += " " + _("за последние %(days)s дн.") % {"days": _fmt(spec["within_days"])}
    return what + ": " + _window_conditions(spec, money=False)


def _window_conditions(spec: dict, *, money: bool) -> str:
    parts = []
    if spec.get("count"):
        parts.append(_("количество %(comparisons)s") % {"comparisons": _comparisons(spec["count"])})
    if money and spec.get("sum"):
        sums = _comparisons(spec["sum"], " ₽")
        parts.append(_("на сумму %(comparisons)s") % {"comparisons": sums})
    return ", ".join(parts) or _("есть хотя бы одно")


def _describe(node: dict, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for group in GROUPS:
        if group in node:
            lines.append(f"{pad}{GROUP_LABELS[group]}")
            for child in node[group]:
                _describe(child, depth + 1, lines)
            return
    lines.append(f"{pad}• {_describe_leaf(node)}")


def rule_describe(tree: Any) -> str:
    """The rule in Russian, one condition per line, groups indented; for an invalid rule, its
    errors."""
    errors = validate_rule(tree)
    if errors:
        return _("Правило с ошибками:") + "\n" + "\n".join(f"• {e}" for e in errors)
    lines: list[str] = []
    _describe(tree, 0, lines)
    return "\n".join(lines)
