"""Every model that holds something of a person is covered by consent's erasure or access archive:
a step or section registered in consent.hooks, consent's own core, or an exemption said here.

A model holds something of a person when it has a key to ``clients.Customer`` or a field whose
name says it holds identifiers or their hashes (email, phone, hash, values: the audience
snapshot chunks keep the hashed identifiers sent to the platforms in ``values``)."""

from __future__ import annotations

import re

import pytest
from django.apps import apps

from clients.models import Customer
from consent import hooks
from consent.hooks import ArchiveSection, ErasureStep, WithdrawalHook, covered_models, register
from consent.requests import CORE_ARCHIVE_MODELS, CORE_ERASURE_MODELS
from consent.services import consent_record_append
from tests.consent.conftest import publish_texts

IDENTIFIER_FIELD = re.compile(r"email|phone|(^|_)(hash|hashes|hashed)(_|$)|^values$")

# Models matched by the walk that hold nothing of a client's data subjects.
EXEMPT = {
    # The agency's staff and the portal's users: accounts of the operator's own people.
    "auth.User": "email of a staff or portal account",
    # The hash of an API key's secret, not of anyone's identifier.
    "clients.ApiKey": "hashed_secret",
    # django-axes' log of sign-ins to the admin and the portal: the session hash of a staff or
    # portal account, not of a client's data subject.
    "axes.AccessLog": "session_hash of a staff or portal sign-in",
    # A client's frequency caps: email_per_day and email_per_week are counts, not addresses.
    "campaigns.CampaignSettings": "email_per_day/email_per_week are caps, not identifiers",
    # The links of a client's SMS templates (one row per address, shared by every recipient):
    # url_hash is the hash of the shop's link, not of a person's identifier.
    "campaigns.TrackedLink": "url_hash of a template's link, shared by all recipients",
    # A client's report settings: cost_email is the price of one letter, not an address.
    "reports.ReportSettings": "cost_email is a price, not an identifier",
    "reports.AttributionReport": "a proxy of ReportSettings (the admin's attribution page)",
}


def holding_a_person() -> dict[str, list[str]]:
    """Every model with a customer key or an identifier field, and why."""
    found = {}
    for model in apps.get_models():
        reasons = []
        for field in model._meta.get_fields():
            if not getattr(field, "concrete", False):
                continue
            if field.is_relation and field.related_model is Customer:
                reasons.append(f"{field.name} → clients.Customer")
            elif IDENTIFIER_FIELD.search(field.name):
                reasons.append(f"{field.name} (identifiers)")
        if reasons:
            found[model._meta.label] = reasons
    return found


def test_every_model_holding_a_person_has_an_erasure_step_or_an_archive_section():
    covered = covered_models()
    accepted = (
        covered["erasure"]
        | covered["archive"]
        | set(CORE_ARCHIVE_MODELS)
        | set(CORE_ERASURE_MODELS)
        | set(EXEMPT)
    )
    uncovered = [
        f"{label} ({', '.join(reasons)})"
        for label, reasons in sorted(holding_a_person().items())
        if label not in accepted
    ]
    assert not uncovered, (
        "No consent erasure step and no access-archive section covers: "
        + "; ".join(uncovered)
        + ". Register them in the app's ready() (consent.hooks), or exempt them here with why."
    )


def test_the_walk_finds_what_the_apps_hold_and_every_name_is_a_model():
    found = holding_a_person()
    assert {
        "clients.Customer",
        "consent.ConsentRecord",
        "segments.CustomerScore",
        "segments.SegmentMembership",
        "audiences.AudienceSnapshotChunk",
    } <= set(found)
    assert set(EXEMPT) <= set(found), "an exemption nothing needs any more"
    covered = covered_models()
    core = set(CORE_ARCHIVE_MODELS) | set(CORE_ERASURE_MODELS)
    for label in covered["erasure"] | covered["archive"] | core:
        apps.get_model(label)  # LookupError on a misspelt or removed model


def test_segments_and_audiences_register_in_ready():
    sections = {(s.app, s.name): s.models for s in hooks.ACCESS_ARCHIVE_SECTIONS}
    assert sections[("segments", "scores")] == ("segments.CustomerScore",)
    assert sections[("segments", "segment_memberships")] == ("segments.SegmentMembership",)
    assert sections[("audiences", "audience_exports")] == ("audiences.AudienceSnapshotChunk",)
    steps = {(s.app, s.name): set(s.models) for s in hooks.ERASURE_STEPS}
    assert steps[("segments", "scores_and_memberships")] == {
        "segments.CustomerScore",
        "segments.SegmentMembership",
    }
    assert steps[("audiences", "platform_removal")] == {"audiences.AudienceSnapshotChunk"}
    # Registered lowest app first; consent runs them highest first (audiences before segments).
    order = [step.app for step in hooks.ERASURE_STEPS]
    assert order.index("segments") < order.index("audiences")


def test_registering_again_replaces_and_a_section_name_belongs_to_one_app(monkeypatch):
    monkeypatch.setattr(hooks, "ACCESS_ARCHIVE_SECTIONS", [])

    def section(app: str, title: str) -> ArchiveSection:
        return ArchiveSection(app=app, name="messages", title=title, models=(), build=list)

    register(section("campaigns", "first"))
    register(section("campaigns", "second"))
    assert [s.title for s in hooks.ACCESS_ARCHIVE_SECTIONS] == ["second"]
    with pytest.raises(ValueError, match="registered by campaigns"):
        register(section("reports", "third"))
    with pytest.raises(TypeError):
        register(object())


@pytest.mark.django_db
def test_withdrawal_hooks_run_in_the_withdrawal_transaction(client_a, monkeypatch):
    publish_texts(client_a)
    customer = Customer.objects.create(client=client_a, external_id="p", email="p@example.ru")
    seen = []
    monkeypatch.setattr(hooks, "WITHDRAWAL_HOOKS", [])
    monkeypatch.setattr("consent.services.WITHDRAWAL_HOOKS", hooks.WITHDRAWAL_HOOKS)
    register(
        WithdrawalHook(
            app="campaigns",
            name="cancel_queued",
            run=lambda *, customer, purpose: seen.append((customer.pk, purpose.code)),
        )
    )

    for action in ("granted", "withdrawn"):
        consent_record_append(
            client=client_a,
            customer=customer,
            purpose_code="email_marketing",
            action=action,
            source="api",
        )

    assert seen == [(customer.pk, "email_marketing")]


@pytest.mark.django_db
def test_erasure_steps_get_the_identifiers_as_they_were_and_report_into_the_resolution(
    client_a, monkeypatch
):
    from consent.models import DataSubjectRequest
    from consent.requests import customer_erase, dsr_create

    customer = Customer.objects.create(
        client=client_a, external_id="p", email="p@example.ru", phone="+79990000001"
    )
    seen = []

    def step(subject):
        seen.append((subject.email, subject.phone, subject.external_id, subject.customer.email))
        return "Кампании: адреса в очереди сообщений удалены."

    monkeypatch.setattr(
        "consent.requests.ERASURE_STEPS",
        [ErasureStep(app="campaigns", name="messages", models=(), run=step)],
    )
    request = dsr_create(client=client_a, kind=DataSubjectRequest.Kind.ERASURE, customer=customer)

    customer_erase(customer=customer, request=request)

    assert seen == [("p@example.ru", "+79990000001", "p", "")]
    request.refresh_from_db()
    assert request.resolution.endswith("Кампании: адреса в очереди сообщений удалены.")
