"""Message templates in a sandbox: a Django template engine of its own that can read no file,
load no library, include or extend nothing, and sees only a whitelisted context of plain values.

- :data:`VARIABLES` is the whitelist: ``first_name``, ``last_name``, ``recommendations`` (a list
  of dicts ``{id, name, price}``), ``offer_code``, ``unsubscribe_url``, ``client_name``.
- :func:`template_variables_check` compiles a subject and a body and walks the compiled nodes
  (variables, filter arguments, ``if`` conditions, ``for`` sequences, ``with`` values): any name
  outside the whitelist, any attribute look-up on a string (``{{ first_name.upper }}``) and any
  look-up the whitelist does not describe is refused with the variable's name
  (``template_unknown_variable``); a syntax error, an unknown tag (``{% load %}``,
  ``{% include %}``, ``{% extends %}``, ``{% debug %}``) or filter (``safe``) is
  ``template_syntax``. A ``{% for item in recommendations %}`` declares ``item`` (with
  ``item.id``, ``item.name``, ``item.price``) and ``forloop`` inside the loop only.
- :func:`render_message` renders a template: an email body as HTML (autoescaped: a customer's
  name cannot inject markup; ``safe`` and ``autoescape`` do not exist here) with a plain-text
  alternative, SMS and push bodies as plain text. ``link_wrapper`` rewrites every http(s) link
  (``href`` attributes in HTML, bare URLs in text) except the unsubscribe link.

Only tags and filters that compute nothing dangerous are registered (:data:`SANDBOX`); the
context holds only ``str``, ``int``, ``Decimal``/``float`` and lists of plain dicts, never a model.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.template import (
    Context,
    Engine,
    Library,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.template.base import FilterExpression, Node, NodeList, Variable, VariableNode
from django.utils.html import strip_tags
from django.utils.translation import gettext

from agency.errors import ServiceError

# --------------------------------------------------------------------------------------------
# The whitelist

RECOMMENDATION_FIELDS = ("id", "name", "price")
VARIABLES: dict[str, str] = {
    "first_name": "str",
    "last_name": "str",
    "recommendations": "list",
    "offer_code": "str",
    "unsubscribe_url": "str",
    "client_name": "str",
}
FORLOOP_FIELDS = ("counter", "counter0", "revcounter", "revcounter0", "first", "last")

# Values a preview, a test send and the SMS length check use when no customer is at hand.
SAMPLE_VARIABLES: dict[str, Any] = {
    "first_name": "Александра",
    "last_name": "Константинопольская",
    "recommendations": [
        {"id": 101, "name": "Увлажняющий крем для лица, 50 мл", "price": Decimal("1490.00")},
        {"id": 102, "name": "Сыворотка с витамином C, 30 мл", "price": Decimal("2190.00")},
        {"id": 103, "name": "Мицеллярная вода, 400 мл", "price": Decimal("690.00")},
    ],
    "offer_code": "WELCOME10",
    "unsubscribe_url": "https://example.ru/consent/u/" + "x" * 90 + "/",
    "client_name": "Магазин",
}

# --------------------------------------------------------------------------------------------
# The sandbox's tags and filters

SANDBOX = Library()
for _name in ("if", "for", "with", "firstof", "comment", "spaceless", "verbatim", "now"):
    SANDBOX.tag(_name, defaulttags.register.tags[_name])
for _name in (
    "add",
    "capfirst",
    "center",
    "cut",
    "date",
    "default",
    "default_if_none",
    "first",
    "floatformat",
    "join",
    "last",
    "length",
    "linebreaksbr",
    "ljust",
    "lower",
    "pluralize",
    "rjust",
    "slice",
    "striptags",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "wordcount",
    "yesno",
):
    SANDBOX.filter(_name, defaultfilters.register.filters[_name])


class SandboxEngine(Engine):
    """No default tag libraries (no ``load``, ``include``, ``extends``, ``debug``), no
    loaders, no libraries to load: only :data:`SANDBOX`."""

    default_builtins: list[str] = []

    def __init__(self) -> None:
        super().__init__(dirs=[], app_dirs=False, loaders=[], libraries={}, debug=False)
        self.template_libraries = {}
        self.template_builtins = [SANDBOX]


ENGINE = SandboxEngine()

# --------------------------------------------------------------------------------------------
# The check


class _Unknown(Exception):  # noqa: N818 - carries the variable's name out of the walk
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _lookup_type(kind: str, lookups: tuple[str, ...]) -> str:
    """The type reached by ``lookups`` from a value of ``kind``; raises ValueError when the
    whitelist does not allow them."""
    for bit in lookups:
        if kind == "list" and bit.isdigit():
            kind = "item"
        elif kind == "item" and bit in RECOMMENDATION_FIELDS:
            kind = "str"
        elif kind == "forloop" and bit in FORLOOP_FIELDS:
            kind = "str"
        elif kind == "forloop" and bit == "parentloop":
            kind = "forloop"
        else:
            raise ValueError(bit)
    return kind


def _variable_type(variable: Variable, scope: Mapping[str, str]) -> str:
    if variable.lookups is None:  # a literal
        return "str"
    name = variable.lookups[0]
    if name not in scope:
        raise _Unknown(name)
    try:
        return _lookup_type(scope[name], tuple(variable.lookups[1:]))
    except ValueError:
        raise _Unknown(".".join(variable.lookups)) from None


def _expression_type(expression: Any, scope: Mapping[str, str]) -> str:
    if not isinstance(expression, FilterExpression):
        return "str"
    kind = _variable_type(expression.var, scope) if isinstance(expression.var, Variable) else "str"
    for _func, args in expression.filters:
        for is_variable, arg in args:
            if is_variable:
                _variable_type(arg, scope)
        name = _func.__name__
        if kind == "list" and name in ("first", "last"):
            kind = "item"
        elif name not in ("slice_filter", "default", "default_if_none"):
            kind = "str"
    return kind


def _condition(token: Any, scope: Mapping[str, str]) -> None:
    if token is None:
        return
    value = getattr(token, "value", None)
    if isinstance(value, FilterExpression):
        _expression_type(value, scope)
    for side in ("first", "second"):
        part = getattr(token, side, None)
        if part is not None and part is not token:
            _condition(part, scope)


def _walk(nodes: NodeList | list[Node], scope: Mapping[str, str]) -> None:
    for node in nodes:
        if isinstance(node, VariableNode):
            _expression_type(node.filter_expression, scope)
        elif isinstance(node, defaulttags.ForNode):
            sequence = _expression_type(node.sequence, scope)
            inner = dict(scope)
            item = "item" if sequence == "list" and len(node.loopvars) == 1 else "str"
            for name in node.loopvars:
                inner[name] = item
            inner["forloop"] = "forloop"
            _walk(node.nodelist_loop, inner)
            _walk(node.nodelist_empty, scope)
        elif isinstance(node, defaulttags.IfNode):
            for condition, nodelist in node.conditions_nodelists:
                _condition(condition, scope)
                _walk(nodelist, scope)
        elif isinstance(node, defaulttags.WithNode):
            inner = dict(scope)
            for name, expression in node.extra_context.items():
                inner[name] = _expression_type(expression, scope)
            _walk(node.nodelist, inner)
        elif isinstance(node, defaulttags.FirstOfNode):
            for expression in node.vars:
                _expression_type(expression, scope)
            if node.asvar:
                raise TemplateSyntaxError("firstof ... as")
        else:
            for attribute in getattr(node, "child_nodelists", ()):
                _walk(getattr(node, attribute, None) or [], scope)


@functools.lru_cache(maxsize=256)
def _compile(source: str, field: str) -> Any:
    try:
        template = ENGINE.from_string(source)
        _walk(template.nodelist, VARIABLES)
    except _Unknown as exc:
        allowed = ", ".join(VARIABLES)
        raise ServiceError(
            "template_unknown_variable",
            gettext(
                "Неизвестная переменная «%(name)s» в шаблоне. Доступны: %(allowed)s "
                "(у товаров в recommendations — id, name, price)."
            )
            % {"name": exc.name, "allowed": allowed},
            field=field,
            extra={"variable": exc.name},
        ) from None
    except TemplateSyntaxError as exc:
        raise ServiceError(
            "template_syntax",
            gettext("Ошибка в шаблоне: %(error)s") % {"error": exc},
            field=field,
        ) from None
    return template


def template_variables_check(subject: str, body: str) -> None:
    """Refuse a subject or body that names a variable outside :data:`VARIABLES` (code
    ``template_unknown_variable``, ``field`` "subject" or "body", ``variable`` in the body) or
    that does not compile in the sandbox (``template_syntax``)."""
    _compile(subject or "", "subject")
    _compile(body or "", "body")


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class RenderedMessage:
    """A rendered message: ``subject`` (email subject or push title, plain text), ``body``
    (HTML for email, plain text for SMS and push) and ``text`` (the plain-text alternative of
    an email; the body itself for SMS and push)."""

    subject: str
    body: str
    text: str


def _plain(value: Any) -> Any:
    """Only plain values reach a template: strings, numbers, lists of plain dicts."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, list | tuple):
        return [
            {key: _plain(item.get(key)) for key in RECOMMENDATION_FIELDS}
            if isinstance(item, Mapping)
            else str(item)
            for item in value
        ]
    return str(value)


def template_context(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The whitelisted part of ``variables``, as plain values; absent names are empty."""
    context = {name: _plain(variables.get(name)) for name in VARIABLES}
    if not isinstance(context["recommendations"], list):
        context["recommendations"] = []
    return context


_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'\s>]+)\2""", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)»\"'"


def _wrap_html(body: str, wrapper: Callable[[str], str], keep: str) -> str:
    def replace(match: re.Match) -> str:
        url = html.unescape(match.group(3))
        if url == keep:
            return match.group(0)
        wrapped = html.escape(wrapper(url), quote=True)
        return f"{match.group(1)}{match.group(2)}{wrapped}{match.group(2)}"

    return _HREF.sub(replace, body)


def wrap_text_links(text: str, wrapper: Callable[[str], str], keep: str = "") -> str:
    """Every bare http(s) URL of ``text`` through ``wrapper``, except ``keep`` (the
    unsubscribe link); trailing punctuation stays outside the link."""

    def replace(match: re.Match) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:
            tail = url[-1] + tail
            url = url[:-1]
        if not url or url == keep:
            return match.group(0)
        return wrapper(url) + tail

    return _BARE_URL.sub(replace, text)


_BLOCK_END = re.compile(r"(?i)<br\s*/?>|</(p|div|h[1-6]|li|tr|table)>")
_ANCHOR = re.compile(r"""(?is)<a\b[^>]*\bhref\s*=\s*(["'])(.*?)\1[^>]*>(.*?)</a>""")


def html_to_text(body: str) -> str:
    """A plain-text alternative of an HTML email: links as "text (URL)", blocks as lines."""

    def anchor(match: re.Match) -> str:
        url = html.unescape(match.group(2))
        label = strip_tags(match.group(3)).strip()
        # Still HTML here (unescaped once at the end): the URL goes back escaped.
        if not label or html.unescape(label) == url:
            return html.escape(url)
        return f"{label} ({html.escape(url)})"

    text = _ANCHOR.sub(anchor, body)
    text = _BLOCK_END.sub(lambda m: m.group(0) + "\n", text)
    text = html.unescape(strip_tags(text))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def render_message(
    template: Any,
    variables: dict,
    *,
    link_wrapper: Callable[[str], str] | None = None,
) -> RenderedMessage:
    """Render a :class:`~campaigns.models.MessageTemplate` with ``variables`` (only the names of
    :data:`VARIABLES` are read). Refuses a template that fails the check (``ServiceError``).

    Email: the body is HTML, autoescaped; ``text`` its plain-text alternative. SMS and push:
    plain text, nothing escaped. ``link_wrapper`` gets every http(s) link of the output (``href``
    attributes in HTML, bare URLs in text) and returns its replacement (the signed click
    redirect); the unsubscribe link is left as it is."""
    context = template_context(variables)
    subject_template = _compile(template.subject or "", "subject")
    body_template = _compile(template.body or "", "body")
    is_email = template.channel == "email"
    subject = subject_template.render(Context(context, autoescape=False))
    subject = " ".join(subject.split())  # a header is one line
    body = body_template.render(Context(context, autoescape=is_email))
    keep = context["unsubscribe_url"]
    if is_email:
        text = html_to_text(body)
        if link_wrapper is not None:
            body = _wrap_html(body, link_wrapper, keep)
            text = wrap_text_links(text, link_wrapper, keep)
    else:
        body = body.strip()
        if link_wrapper is not None:
            body = wrap_text_links(body, link_wrapper, keep)
        text = body
    return RenderedMessage(subject=subject, body=body, text=text)


# --------------------------------------------------------------------------------------------
# SMS length

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€")
SMS_MAX_SEGMENTS = 8


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes: GSM-7 (160 characters, 153 per part; extended
    characters count twice) or, with any other character (Cyrillic), UCS-2 (70, 67 per part;
    characters beyond the BMP count twice)."""
    if not text:
        return 0
    if all(ch in GSM7 or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, part = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)
