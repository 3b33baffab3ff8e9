"""Reads of segments for the apps above (campaigns, portal): one query per batch."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from clients.models import Client

from .models import CustomerRecommendation


def recommendations_for(
    *, client: Client | int, customer_ids: Iterable[int]
) -> dict[int, list[dict[str, Any]]]:
    """The products recommended to each of ``customer_ids`` (customers of ``client``), for
    ``{{ recommendations }}`` in a batch of messages: one query whatever the batch's size.

    Returns ``{customer_id: [{"id": str, "name": str, "price": Decimal | None}, ...]}`` with
    every requested id as a key, its list in rank order (at most the client's
    ``ScoringSettings.recommendations_count``, 5 by default; fewer, or ``[]``, when the client
    sells too few products, before the first scoring run, for an erased customer or another
    client's id). ``id`` is the product's SKU as in ``Order.items``; ``name`` the name last seen
    in the client's orders (the SKU when the orders never named it); ``price`` the unit price
    last seen, in roubles (``None`` when none was sent). Products bought together with what the
    person bought come first, the client's best sellers of the last 90 days fill the rest; the
    person's own purchases are never among them (``segments.recommend``; computed by the nightly
    scoring run)."""
    wanted = {int(customer_id) for customer_id in customer_ids}
    found: dict[int, list[dict[str, Any]]] = dict.fromkeys(wanted, [])
    if not wanted:
        return found
    rows = (
        CustomerRecommendation.objects.for_client(client)
        .filter(customer_id__in=wanted)
        .values_list("customer_id", "products")
    )
    for customer_id, products in rows:
        found[customer_id] = [
            {"id": item["id"], "name": item["name"], "price": _price(item.get("price"))}
            for item in products
        ]
    return found


def _price(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
