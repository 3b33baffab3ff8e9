"""Bitrix24 webhook payloads (contacts and deals) mapped to ingestion records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _

from ..crm.forms import (
    DEAL_LOST,
    DEAL_OPEN,
    DEAL_WON,
    as_list,
    as_text,
    empty_records,
    skipped,
    without_blanks,
)

BITRIX24 = "bitrix24"
# Prefix of the customer and order external ids written for Bitrix24 contacts and deals, so they
# cannot collide with ids from a shop backend or a CSV import.
BITRIX24_PREFIX = "b24-"


B24_CONTACT_EVENTS = ("ONCRMCONTACTADD", "ONCRMCONTACTUPDATE")
B24_DEAL_EVENTS = ("ONCRMDEALADD", "ONCRMDEALUPDATE")
B24_DELETE_EVENTS = ("ONCRMCONTACTDELETE", "ONCRMDEALDELETE")
B24_CONTACT_DATA_FIELDS = ("NAME", "LAST_NAME", "EMAIL", "PHONE", "ADDRESS_CITY", "DATE_CREATE")
_B24_CATEGORY_PREFIX = re.compile(r"^C\d+:")


def _b24_first_multifield(value: Any) -> str | None:
    """EMAIL/PHONE are lists of ``{"VALUE": ..., "VALUE_TYPE": "WORK", ...}``; the first filled
    one is the contact's."""
    for item in as_list(value):
        text = as_text(item.get("VALUE")) if isinstance(item, dict) else as_text(item)
        if text:
            return text
    return None


def _b24_deal_status(fields: Mapping[str, Any]) -> str:
    """WON is won, LOSE/APOLOGY lost (also in other pipelines: ``C1:WON``); custom final stages
    are told by STAGE_SEMANTIC_ID (S success, F failure). Anything else is still open."""
    stage = _B24_CATEGORY_PREFIX.sub("", as_text(fields.get("STAGE_ID")).upper())
    semantic = as_text(fields.get("STAGE_SEMANTIC_ID")).upper()
    if stage == "WON" or semantic == "S":
        return DEAL_WON
    if stage in ("LOSE", "APOLOGY") or semantic == "F":
        return DEAL_LOST
    return DEAL_OPEN


def bitrix24_contact_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A contact's fields (as crm.contact.get returns them) as an ingestion customer record."""
    return without_blanks(
        {
            "external_id": BITRIX24_PREFIX + as_text(fields.get("ID")),
            "first_name": as_text(fields.get("NAME")),
            "last_name": as_text(fields.get("LAST_NAME")),
            "email": _b24_first_multifield(fields.get("EMAIL")),
            "phone": _b24_first_multifield(fields.get("PHONE")),
            "city": as_text(fields.get("ADDRESS_CITY")),
            "first_seen": as_text(fields.get("DATE_CREATE")),
            "source": BITRIX24,
        }
    )


def bitrix24_deal_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a deal event says about the deal (see ``crm_webhook_ingest``); absent = not sent."""
    contact_id = as_text(fields.get("CONTACT_ID"))
    if contact_id in ("", "0"):
        contact_id = next(
            (as_text(c) for c in as_list(fields.get("CONTACT_IDS")) if as_text(c)), ""
        )
    return without_blanks(
        {
            "deal_id": as_text(fields.get("ID")),
            "stage": as_text(fields.get("STAGE_ID")),
            "status": _b24_deal_status(fields),
            "contact_id": "" if contact_id == "0" else contact_id,
            "amount": as_text(fields.get("OPPORTUNITY")),
            "currency": as_text(fields.get("CURRENCY_ID")).upper(),
            # CLOSEDATE of a closed deal is its close date; the order falls back to DATE_CREATE.
            "closed_at": as_text(fields.get("CLOSEDATE")),
            "created_at": as_text(fields.get("DATE_CREATE")),
        }
    )


def bitrix24_to_records(payload: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One Bitrix24 outbound event -> ``{"customers", "deals", "links", "skipped", "fetch"}``.

    Bitrix24 itself sends only ``data[FIELDS][ID]``: such a contact or deal event becomes a
    ``fetch`` entry (``{"entity": "contact"|"deal", "id"}``), for the caller to read the fields
    through the client's REST webhook (``crm.contact.get`` / ``crm.deal.get``,
    ``integrations.bitrix24.client``) and map them with this same function. Fields that come in
    the event itself, in the shape crm.contact.get / crm.deal.get return, are mapped at once: a
    contact to a customer record, a deal to what it says about the deal (stage, status,
    CONTACT_ID, OPPORTUNITY...). Whether a deal is an order is decided when it is written,
    against what earlier hooks said (its contact may come later). Deletions are skipped with the
    reason (erasure goes through a data-subject request), as are other events. Bitrix24 contacts
    carry no deal links.
    """
    result = {**empty_records(), "fetch": []}
    event = as_text(payload.get("event")).upper()
    data = payload.get("data")
    fields = data.get("FIELDS") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not as_text(fields.get("ID")):
        result["skipped"].append(skipped("event", event, _("нет data[FIELDS][ID]")))
        return result
    entity_id = fields.get("ID")
    if event in B24_CONTACT_EVENTS:
        if not any(key in fields for key in B24_CONTACT_DATA_FIELDS):
            result["fetch"].append({"entity": "contact", "id": as_text(entity_id)})
        else:
            result["customers"].append(bitrix24_contact_record(fields))
    elif event in B24_DEAL_EVENTS:
        if not as_text(fields.get("STAGE_ID")):
            result["fetch"].append({"entity": "deal", "id": as_text(entity_id)})
        else:
            result["deals"].append(bitrix24_deal_record(fields))
    elif event in B24_DELETE_EVENTS:
        result["skipped"].append(
            skipped(
                event,
                entity_id,
                _("удаление в CRM не удаляет данные: для этого есть запрос субъекта ПДн"),
            )
        )
    else:
        result["skipped"].append(
            skipped(event or "event", entity_id, _("событие не обрабатывается"))
        )
    return result
