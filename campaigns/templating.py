"""PLACEHOLDER until the authoring branch lands (replaced by its sandboxed renderer)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.template import Context, Engine
from django.utils.html import strip_tags

_ENGINE = Engine(
    libraries={}, builtins=["django.template.defaultfilters", "django.template.defaulttags"]
)
_LINK = re.compile(r'(href=")(https?://[^"]+)(")')


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str
    text: str


def render_message(
    template, variables: dict, *, link_wrapper: Callable[[str], str] | None = None
) -> RenderedMessage:
    html = template.channel == "email"
    body = _ENGINE.from_string(template.body).render(Context(variables, autoescape=html))
    subject = _ENGINE.from_string(template.subject).render(Context(variables, autoescape=False))
    if link_wrapper is not None:
        unsubscribe = variables.get("unsubscribe_url", "")
        body = _LINK.sub(
            lambda m: (
                m.group(0)
                if m.group(2) == unsubscribe
                else m.group(1) + link_wrapper(m.group(2)) + m.group(3)
            ),
            body,
        )
    return RenderedMessage(subject=subject, body=body, text=strip_tags(body) if html else body)
