"""Rendering a chunk of messages: the whitelisted variables of each person (first name, next
best offer, offer code, unsubscribe link) and tracked links, through the sandbox of
``campaigns.templating``. Email gets an open pixel; links in email and SMS go through our signed
click redirect (``campaigns.tracking``); the unsubscribe link is never wrapped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from consent.purposes import CHANNEL_PURPOSE
from consent.unsubscribe import unsubscribe_url
from segments.selectors import recommendations_for

from . import tracking
from .models import Channel, TriggerChain
from .templating import RenderedMessage, render_message

if TYPE_CHECKING:
    from clients.models import Customer

    from .models import ChainStep, Enrollment


def message_variables(
    customer: Customer, *, channel: str, offer_code: str, recommendations: list, client_name: str
) -> dict:
    return {
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "recommendations": recommendations,
        "offer_code": offer_code,
        "unsubscribe_url": unsubscribe_url(
            customer=customer, purpose_code=CHANNEL_PURPOSE[channel]
        ),
        "client_name": client_name,
    }


def messages_render(
    client_id: int, items: Sequence[tuple[Enrollment, ChainStep, Customer]]
) -> dict[tuple[int, int], RenderedMessage]:
    """``{(enrollment id, step id): RenderedMessage}`` for every item."""
    if not items:
        return {}
    recommendations = recommendations_for(
        client=client_id, customer_ids=[c.pk for _e, _s, c in items]
    )
    client_name = (
        TriggerChain.objects.for_client(client_id)
        .filter(pk=items[0][0].chain_id)
        .values_list("client__name", flat=True)
        .first()
        or ""
    )
    rendered: dict[tuple[int, int], RenderedMessage] = {}
    links: dict[str, int] = {}  # SMS links' ids, one query per distinct address
    for enrollment, step, customer in items:
        template = step.template
        variables = message_variables(
            customer,
            channel=step.channel,
            offer_code=template.offer_code,
            recommendations=recommendations.get(customer.pk, []),
            client_name=client_name,
        )
        wrapper = None
        if step.channel in (Channel.EMAIL, Channel.SMS):
            wrapper = tracking.click_wrapper(
                enrollment.pk, step.pk, channel=step.channel, client_id=client_id, links=links
            )
        message = render_message(template, variables, link_wrapper=wrapper)
        if step.channel == Channel.EMAIL:
            message = tracking.with_open_pixel(message, enrollment.pk, step.pk)
        rendered[(enrollment.pk, step.pk)] = message
    return rendered
