"""The language and the time zone of what people see, in one place.

Language (README, "Languages"): Russian by default, English on request (the portal's language
switch, the admin's and the API's Accept-Language, ``?lang=`` on the schema). Labels and
messages are translated when they are shown, in the viewer's language; a text written to the
database (a run's stage, a data recipient's name) is written in the site's language,
``LANGUAGE_CODE``, whatever the language of the request that caused it: :func:`site_language`.

Time: a client's data is shown in the client's time zone (``Client.time_zone``), whoever looks
at it: :func:`in_client_zone` around a page of one client (the portal, an admin change form),
:func:`client_localtime` for one value next to other clients' values (admin lists, titles).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.utils import formats, timezone, translation


def site_language() -> translation.override:
    """Activate the site's language (``LANGUAGE_CODE``) for texts about to be stored."""
    return translation.override(settings.LANGUAGE_CODE)


def client_tzinfo(obj: Any) -> zoneinfo.ZoneInfo:
    """The time zone of a client (anything with ``time_zone``) or of a row of its data (with
    ``client``); the site's zone for anything else."""
    name = getattr(obj, "time_zone", None)
    if name is None and getattr(obj, "client_id", None) is not None:
        name = obj.client.time_zone
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def client_localtime(obj: Any, value: dt.datetime | None) -> dt.datetime | None:
    """``value`` in the time zone of ``obj``'s client (see :func:`client_tzinfo`)."""
    if value is None:
        return None
    return timezone.localtime(value, client_tzinfo(obj))


def client_time_display(obj: Any, value: dt.datetime | None, *, with_zone: bool = True) -> str:
    """``value`` in ``obj``'s client's zone, formatted for the active language, with the zone's
    abbreviation ("24 ноября 2026 г. 18:00 +10")."""
    local = client_localtime(obj, value)
    if local is None:
        return "—"
    text = formats.localize(local)
    return f"{text} {local.tzname()}" if with_zone else text


@contextmanager
def in_client_zone(obj: Any) -> Iterator[None]:
    """Show (and read) times in the zone of ``obj``'s client while the block runs; render the
    response inside it (a ``TemplateResponse`` renders late otherwise)."""
    with timezone.override(client_tzinfo(obj)):
        yield
