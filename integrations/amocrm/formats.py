"""amoCRM webhook payloads (contacts and leads) mapped to ingestion records."""

from __future__ import annotations

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
    unix_to_iso,
    without_blanks,
)

AMOCRM = "amocrm"
AMOCRM_PREFIX = "amo-"


AMO_WON = "142"  # system statuses, the same ids in every pipeline
AMO_LOST = "143"
AMO_CONTACT_ACTIONS = ("add", "update")
AMO_LEAD_ACTIONS = ("add", "update", "status")


def _amo_custom_field(entity: Mapping[str, Any], code: str) -> str | None:
    """``custom_fields[i][code]=PHONE``, ``custom_fields[i][values][0][value]=...``."""
    for field in as_list(entity.get("custom_fields")):
        if not isinstance(field, dict) or as_text(field.get("code")).upper() != code:
            continue
        for item in as_list(field.get("values")):
            text = as_text(item.get("value")) if isinstance(item, dict) else as_text(item)
            if text:
                return text
    return None


def _amo_contact(contact: Mapping[str, Any]) -> dict[str, Any]:
    # amoCRM's contact has one ``name`` (the full name, in whatever order the manager typed it);
    # first_name/last_name are used when sent. The full name is not split by guessing.
    first_name = as_text(contact.get("first_name")) or as_text(contact.get("name"))
    return without_blanks(
        {
            "external_id": AMOCRM_PREFIX + as_text(contact.get("id")),
            "first_name": first_name,
            "last_name": as_text(contact.get("last_name")),
            "email": _amo_custom_field(contact, "EMAIL"),
            "phone": _amo_custom_field(contact, "PHONE"),
            "first_seen": unix_to_iso(contact.get("date_create") or contact.get("created_at")),
            "source": AMOCRM,
        }
    )


def _amo_linked_lead_ids(contact: Mapping[str, Any]) -> list[str]:
    """``linked_leads_id[<lead id>][ID]=<lead id>`` (an object keyed by lead id)."""
    linked = contact.get("linked_leads_id")
    ids: list[str] = []
    if isinstance(linked, dict):
        for key, value in linked.items():
            ids.append(as_text(value.get("ID")) if isinstance(value, dict) else as_text(key))
    else:
        ids.extend(
            as_text(v.get("ID")) if isinstance(v, dict) else as_text(v) for v in as_list(linked)
        )
    return [i for i in ids if i]


def _amo_lead(lead: Mapping[str, Any]) -> dict[str, Any]:
    """What a lead hook says about the lead; absent = not sent. Its contact only when the sender
    adds ``main_contact_id``: amoCRM's own lead hooks do not carry it."""
    status_id = as_text(lead.get("status_id"))
    status = None
    if status_id:
        status = {AMO_WON: DEAL_WON, AMO_LOST: DEAL_LOST}.get(status_id, DEAL_OPEN)
    return without_blanks(
        {
            "deal_id": as_text(lead.get("id")),
            "stage": status_id,
            "status": status,
            "contact_id": as_text(lead.get("main_contact_id")),
            "amount": as_text(lead.get("price")),
            "closed_at": unix_to_iso(lead.get("closed_at")),
            "created_at": unix_to_iso(lead.get("date_create") or lead.get("created_at")),
        }
    )


def amocrm_to_records(payload: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One amoCRM webhook -> ``{"customers", "deals", "links", "skipped"}``.

    Contacts added or updated become customers (companies, ``type=company``, are skipped), and
    each lead a contact lists in ``linked_leads_id`` becomes a link lead -> contact. Leads (add,
    update, status) are mapped to what they say about the lead: status 142 won, 143 lost, any
    other open; amount = ``price``; ``closed_at`` and the creation time (``date_create``). A won
    lead becomes an order when it is written, once a link to a known contact exists, from this
    hook or an earlier or later one: amoCRM's lead hooks never carry the contact.
    """
    result = empty_records()
    contacts = payload.get("contacts")
    contacts = contacts if isinstance(contacts, dict) else {}
    for action, entities in contacts.items():
        for contact in as_list(entities):
            if not isinstance(contact, dict) or not as_text(contact.get("id")):
                continue
            contact_id = as_text(contact.get("id"))
            if action not in AMO_CONTACT_ACTIONS:
                result["skipped"].append(
                    skipped(
                        "contact",
                        contact_id,
                        _("действие %(action)s с контактом не обрабатывается") % {"action": action},
                    )
                )
                continue
            if as_text(contact.get("type")).lower() == "company":
                result["skipped"].append(
                    skipped("company", contact_id, _("компания, а не покупатель"))
                )
                continue
            result["customers"].append(_amo_contact(contact))
            result["links"].extend(
                {"deal_id": lead_id, "contact_id": contact_id}
                for lead_id in _amo_linked_lead_ids(contact)
            )

    leads = payload.get("leads")
    leads = leads if isinstance(leads, dict) else {}
    for action, entities in leads.items():
        for lead in as_list(entities):
            if not isinstance(lead, dict) or not as_text(lead.get("id")):
                continue
            if action not in AMO_LEAD_ACTIONS:
                result["skipped"].append(
                    skipped(
                        "lead",
                        lead.get("id"),
                        _("действие %(action)s со сделкой не обрабатывается") % {"action": action},
                    )
                )
                continue
            result["deals"].append(_amo_lead(lead))
    return result


# --------------------------------------------------------------------------------------------
# Views
