"""English complete when English is chosen: every message of locale/en is translated (no empty
and no fuzzy msgstr, and the compiled .mo says the same), the admin's lists speak English in
their column headers, filters and actions, and a bulk row error has one code in both languages
with its message in the request's language."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from audiences.models import SyncRun
from audiences.services import audience_create, destination_create
from clients.models import Customer
from consent.models import ConsentPurpose
from consent.services import consent_record_append
from segments.models import Segment

ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}
CYRILLIC = re.compile("[А-Яа-яЁё]")
EN_PO = Path(settings.LOCALE_PATHS[0]) / "en" / "LC_MESSAGES" / "django.po"
PO_LINE = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$')


def _catalogue_entries(path: Path) -> list[dict]:
    """The entries of a .po file (obsolete ones left out): msgctxt, msgid, msgid_plural,
    msgstr / msgstr[n] as text, and its flags."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry: dict = {"flags": set()}
        key = None
        for line in block.splitlines():
            if line.startswith("#~"):
                entry = {}
                break
            if line.startswith("#,"):
                entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
            elif match := re.match(
                r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$', line
            ):
                key = match.group(1)
                entry[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key:
                entry[key] += ast.literal_eval(line)
        if entry.get("msgid"):
            entries.append(entry)
    return entries


def test_every_english_message_is_translated_and_none_is_fuzzy():
    entries = _catalogue_entries(EN_PO)
    assert len(entries) > 1000  # the catalogue was read
    empty = [
        e["msgid"] for e in entries if not all(v for k, v in e.items() if k.startswith("msgstr"))
    ]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert empty == [], f"{len(empty)} empty msgstr in {EN_PO}"
    assert fuzzy == [], f"{len(fuzzy)} fuzzy entries in {EN_PO}"


def test_the_compiled_english_catalogue_says_what_its_po_says():
    """compilemessages was run after the last change: the .mo gives every translation."""
    with EN_PO.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in _catalogue_entries(EN_PO):
        if "msgid_plural" in entry:
            got = compiled.ngettext(entry["msgid"], entry["msgid_plural"], 1)
            expected = entry["msgstr[0]"]
        elif "msgctxt" in entry:
            got = compiled.pgettext(entry["msgctxt"], entry["msgid"])
            expected = entry["msgstr"]
        else:
            got, expected = compiled.gettext(entry["msgid"]), entry["msgstr"]
        if got != expected:
            stale.append(entry["msgid"])
    assert stale == [], f"{len(stale)} messages differ in the .mo: run compilemessages"


# --------------------------------------------------------------------------------------------
# The admin in English


@pytest.fixture
def lists_with_rows(client_a):
    """One row in each list below, so that its table (and column headers) is shown."""
    customer = Customer.objects.create(client=client_a, external_id="c-1", email="a@example.ru")
    consent_record_append(
        client=client_a,
        customer=customer,
        purpose_code="email_marketing",
        action="withdrawn",  # a withdrawal needs no published text
        source="unsubscribe_link",
    )
    destination = destination_create(
        client=client_a, name="Яндекс", platform="yandex_audiences", credentials={"token": "t"}
    )
    segment = Segment.objects.create(client=client_a, name="Лучшие", kind="rule", definition={})
    audience = audience_create(
        client=client_a, name="Лучшие → Яндекс", segment=segment, destination=destination
    )
    SyncRun.objects.create(client=client_a, audience=audience, status="deferred")
    # Data stays as written: the client's own names, and the purposes' names (rows of the
    # purpose table, offered as the choices of the purpose filter).
    purposes = list(ConsentPurpose.objects.values_list("name", flat=True))
    return [*purposes, client_a.name, destination.name, segment.name, audience.name]


def _section(page: str, pattern: str) -> str:
    match = re.search(pattern, page, re.S)
    assert match, pattern
    return match.group(1)


@pytest.mark.parametrize(
    "listing",
    [
        "admin:clients_customer_changelist",
        "admin:consent_consentrecord_changelist",
        "admin:audiences_audience_changelist",
        "admin:audiences_syncrun_changelist",
    ],
)
def test_admin_lists_in_english_have_no_russian_headers_filters_or_actions(
    client, agency_admin, lists_with_rows, listing
):
    client.force_login(agency_admin)
    page = client.get(reverse(listing), **ENGLISH).content.decode()
    for data in lists_with_rows:
        page = page.replace(data, "")
    sections = {
        "column headers": _section(page, r'<table id="result_list">\s*<thead>(.*?)</thead>'),
        "filters": _section(page, r'<nav id="changelist-filter"[^>]*>(.*?)</nav>'),
        "title": _section(page, r"<h1>(.*?)</h1>"),
    }
    if 'name="action"' in page:  # the lists with actions (audiences: "sync now")
        sections["actions"] = _section(page, r'<select name="action"[^>]*>(.*?)</select>')
    for name, html in sections.items():
        text = re.sub(r"<[^>]+>", " ", html)
        assert not CYRILLIC.search(text), f"{name}: {' '.join(text.split())}"
    # The same list is Russian by default.
    russian = client.get(reverse(listing)).content.decode()
    headers = _section(russian, r'<table id="result_list">\s*<thead>(.*?)</thead>')
    assert CYRILLIC.search(re.sub(r"<[^>]+>", " ", headers))


# --------------------------------------------------------------------------------------------
# Row errors: one code, the message in the request's language


def test_bulk_row_errors_keep_their_code_and_follow_accept_language(api_a):
    url = "/api/v1/customers/bulk/?partial=true"
    records = [
        {"external_id": "ok-1", "email": "ok@example.ru"},
        {"external_id": "bad-email", "email": "not an address"},
        {"external_id": "bad-phone", "phone": "12"},
        {"external_id": "future", "first_seen": "2999-01-01T00:00:00+03:00"},
        {"email": "no-id@example.ru"},
        {"external_id": "nul", "first_name": "a\u0000b"},
        {"external_id": "x" * 101},
        {"external_id": "extra", "nickname": "z"},
    ]
    russian = api_a.post(url, records, format="json").json()["errors"]
    english = api_a.post(url, records, format="json", **ENGLISH).json()["errors"]

    def codes(errors):
        return [(e["index"], e["field"], e["code"]) for e in errors]

    assert codes(russian) == codes(english)
    assert codes(english) == [
        (1, "email", "invalid_email"),
        (2, "phone", "invalid_phone"),
        (3, "first_seen", "future_time"),
        (4, "external_id", "required"),
        (5, "first_name", "nul_character"),
        (6, "external_id", "too_long"),
        (7, "nickname", "unknown_field"),
    ]
    by_index = {e["index"]: e["message"] for e in english}
    assert by_index[1] == "invalid email: 'not an address'"
    assert by_index[3] == "date in the future"
    assert by_index[4] == "required field"
    assert by_index[6] == "longer than 100 characters"
    assert by_index[7] == "unknown field"
    for error in english:
        assert not CYRILLIC.search(error["message"]), error
    russian_by_index = {e["index"]: e["message"] for e in russian}
    assert russian_by_index[3] == "дата в будущем"
    assert russian_by_index[4] == "обязательное поле"
    assert russian_by_index[7] == "неизвестное поле"
