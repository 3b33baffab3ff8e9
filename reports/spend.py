"""The one write of daily spend: a day from a source is replaced whole, so a second import of
the same day never doubles it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db import transaction

from .models import SpendDay


@transaction.atomic
def spend_day_replace(
    *, client: Any, source: str, day: date, rows: Iterable[dict[str, Any]]
) -> int:
    """Replace ``source``'s rows of ``day`` with ``rows`` (dicts of SpendDay fields other than
    client, source and day); rows of one campaign are summed. Returns the rows written."""
    merged: dict[str, dict[str, Any]] = {}
    additive = ("cost", "clicks", "impressions", "visits", "leads", "sales", "revenue")
    for row in rows:
        key = str(row["campaign"])
        if key in merged:
            for field in additive:
                merged[key][field] = merged[key].get(field, 0) + row.get(field, 0)
        else:
            merged[key] = dict(row, campaign=key)
    SpendDay.objects.for_client(client).filter(source=source, day=day).delete()
    SpendDay.objects.for_client(client).bulk_create(
        [SpendDay(client=client, source=source, day=day, **row) for row in merged.values()]
    )
    return len(merged)
