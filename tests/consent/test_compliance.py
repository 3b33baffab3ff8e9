"""The 152-FZ checklist of a client, its admin page, the incident register and the consent admin
(texts, the read-only ledger and refusals) with role and client scoping."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from agency.roles import ACCOUNT_MANAGER
from clients.ingest import ingest_records
from clients.models import Customer
from consent.compliance import client_compliance_checklist
from consent.models import (
    ConsentPurpose,
    ConsentRecord,
    ConsentText,
    CrossBorderTransferNotice,
    DataRecipient,
    DataSubjectRequest,
    Incident,
    TransferRefusal,
)
from consent.services import consent_record_append, consent_text_create, consent_text_publish
from consent.transfers import TransferRefused, transfer_check

from .conftest import TEXT_PARTS, publish_texts

pytestmark = pytest.mark.django_db


def checklist(client, **kw) -> dict[str, bool]:
    return {item.code: item.ok for item in client_compliance_checklist(client=client, **kw)}


def detail(client, code: str, **kw) -> str:
    items = client_compliance_checklist(client=client, **kw)
    return next(i.detail for i in items if i.code == code)


def draft(client, purpose="email_marketing", **parts):
    return consent_text_create(
        client=client, purpose_code=purpose, **{"title": "Согласие", **TEXT_PARTS, **parts}
    )


@pytest.fixture
def manager_b(django_user_model, client_b):
    user = django_user_model.objects.create_user(
        username="manager-b", password="pass-12345", is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name=ACCOUNT_MANAGER)[0])
    client_b.account_managers.add(user)
    return user


# --------------------------------------------------------------------------------------------
# The checklist


def test_registry_number_item_flips(client_a):
    assert checklist(client_a)["registry_number"] is False

    client_a.pd_operator_registry_number = "77-22-012345"
    client_a.save(update_fields=["pd_operator_registry_number"])

    assert checklist(client_a)["registry_number"] is True
    assert "77-22-012345" in detail(client_a, "registry_number")


def test_database_location_item_follows_the_setting(client_a, settings):
    assert checklist(client_a)["database_location"] is True
    settings.PD_DATABASE_COUNTRY = "DE"
    assert checklist(client_a)["database_location"] is False


def test_published_text_needed_for_purposes_in_use(client_a, customers_a):
    # Nothing in use yet: nothing to publish.
    assert checklist(client_a)["published_texts"] is True

    # A purpose is in use once a consent record names it (a withdrawal needs no text)...
    consent_record_append(
        client=client_a,
        customer=customers_a[0],
        purpose_code="sms_marketing",
        action="withdrawn",
        source="crm_import",
    )
    # ...or a recipient of the matching kind exists.
    DataRecipient.objects.create(
        client=client_a, name="Яндекс Аудитории", kind=DataRecipient.Kind.AD_PLATFORM
    )
    assert checklist(client_a)["published_texts"] is False
    text = detail(client_a, "published_texts")
    assert "(sms_marketing)" in text
    assert "(ad_audiences)" in text
    assert "email_marketing" not in text

    consent_text_publish(text=draft(client_a, "sms_marketing"))
    assert "(sms_marketing)" not in detail(client_a, "published_texts")
    assert checklist(client_a)["published_texts"] is False

    consent_text_publish(text=draft(client_a, "ad_audiences"))
    assert checklist(client_a)["published_texts"] is True


def test_a_draft_is_not_a_published_text(client_a):
    DataRecipient.objects.create(client=client_a, name="SMSC", kind=DataRecipient.Kind.SMS)
    draft(client_a, "sms_marketing")

    assert checklist(client_a)["published_texts"] is False


def test_overdue_subject_request_item_flips(client_a, client_b):
    today = timezone.localdate()
    request = DataSubjectRequest.objects.create(
        client=client_a,
        kind=DataSubjectRequest.Kind.ACCESS,
        due_date=today - timedelta(days=1),
    )
    DataSubjectRequest.objects.create(  # another client's overdue request does not count
        client=client_b, kind=DataSubjectRequest.Kind.ACCESS, due_date=today - timedelta(days=5)
    )
    assert checklist(client_a)["subject_requests"] is False
    assert checklist(client_b)["subject_requests"] is False

    request.status = DataSubjectRequest.Status.COMPLETED
    request.save(update_fields=["status"])
    assert checklist(client_a)["subject_requests"] is True

    # Due today is not overdue yet.
    DataSubjectRequest.objects.create(
        client=client_a, kind=DataSubjectRequest.Kind.ERASURE, due_date=today
    )
    assert checklist(client_a)["subject_requests"] is True


def test_incident_item_flips_with_its_deadlines(client_a):
    now = timezone.now()
    incident = Incident.objects.create(
        client=client_a, detected_at=now - timedelta(hours=23), description="утечка выгрузки"
    )
    assert checklist(client_a)["incidents"] is True  # 1 hour left to notify

    assert checklist(client_a, now=now + timedelta(hours=2))["incidents"] is False

    incident.notified_at = now
    incident.status = Incident.Status.NOTIFIED
    incident.save()
    assert checklist(client_a, now=now + timedelta(hours=2))["incidents"] is True
    # The 72-hour report is due next.
    later = now + timedelta(hours=50)
    assert checklist(client_a, now=later)["incidents"] is False
    assert "результаты расследования" in detail(client_a, "incidents", now=later)
    assert "уведомление РКН" not in detail(client_a, "incidents", now=later)

    incident.investigation_reported_at = now + timedelta(hours=40)
    incident.save()
    assert checklist(client_a, now=later)["incidents"] is True


def test_cross_border_item_flips(client_a):
    assert checklist(client_a)["cross_border"] is True
    DataRecipient.objects.create(
        client=client_a, name="Twilio", kind=DataRecipient.Kind.SMS, country="US"
    )
    assert checklist(client_a)["cross_border"] is False
    assert "нет уведомления" in detail(client_a, "cross_border")

    notice = CrossBorderTransferNotice.objects.create(
        client=client_a, country="US", recipient="twilio", notified_at=timezone.localdate()
    )
    assert checklist(client_a)["cross_border"] is False
    assert "ожидание до" in detail(client_a, "cross_border")

    notice.notified_at = timezone.localdate() - timedelta(days=60)
    notice.save()
    assert checklist(client_a)["cross_border"] is True


# --------------------------------------------------------------------------------------------
# The checklist page in the admin


def test_checklist_page_is_linked_from_the_client_page(client, client_a, account_manager):
    client.force_login(account_manager)
    url = reverse("admin:consent_compliance_checklist", args=[client_a.pk])

    change_page = client.get(reverse("admin:clients_client_change", args=[client_a.pk]))
    page = client.get(url)

    assert url in change_page.content.decode()
    assert page.status_code == 200
    content = page.content.decode()
    assert "152-ФЗ: Альфа Маркет" in content
    assert 'data-check="registry_number"' in content
    assert "Есть нарушения" in content  # no registry number yet


def test_checklist_page_of_another_client_is_not_found(client, client_a, manager_b):
    client.force_login(manager_b)

    response = client.get(reverse("admin:consent_compliance_checklist", args=[client_a.pk]))

    assert response.status_code == 404


def test_checklist_page_needs_a_staff_role(client, client_a, django_user_model):
    user = django_user_model.objects.create_user(username="x", password="p", is_staff=True)
    client.force_login(user)

    response = client.get(reverse("admin:consent_compliance_checklist", args=[client_a.pk]))

    assert response.status_code == 404


# --------------------------------------------------------------------------------------------
# Consent texts in the admin


def _action(client, url: str, action: str, *objs):
    return client.post(
        url, {"action": action, "_selected_action": [o.pk for o in objs]}, follow=True
    )


TEXTS_URL = "admin:consent_consenttext_changelist"


def test_add_creates_a_draft_with_the_next_version(client, client_a, account_manager):
    consent_text_publish(text=draft(client_a))
    client.force_login(account_manager)
    purpose = ConsentPurpose.objects.get(code="email_marketing")

    response = client.post(
        reverse("admin:consent_consenttext_add"),
        {"client": client_a.pk, "purpose": purpose.pk, "title": "Версия 2", **TEXT_PARTS},
    )

    assert response.status_code == 302
    latest = ConsentText.objects.for_client(client_a).order_by("-version").first()
    assert (latest.version, latest.status, latest.title) == (2, "draft", "Версия 2")


def test_publish_action_names_missing_parts(client, client_a, account_manager):
    complete = draft(client_a)
    incomplete = draft(client_a, "sms_marketing", term="", withdrawal="")
    client.force_login(account_manager)

    response = _action(client, reverse(TEXTS_URL), "publish", complete, incomplete)

    content = response.content.decode()
    assert "Опубликован 1 текст." in content
    assert "срок действия согласия" in content
    assert "как отозвать" in content
    complete.refresh_from_db()
    incomplete.refresh_from_db()
    assert complete.is_published
    assert not incomplete.is_published


def test_analyst_cannot_publish(client, client_a, analyst):
    text = draft(client_a)
    client.force_login(analyst)

    changelist = client.get(reverse(TEXTS_URL))
    response = _action(client, reverse(TEXTS_URL), "publish", text)

    assert changelist.status_code == 200
    assert 'value="publish"' not in changelist.content.decode()
    assert response.status_code == 200
    text.refresh_from_db()
    assert text.status == ConsentText.Status.DRAFT


def test_published_text_is_read_only(client, client_a, agency_admin):
    text = consent_text_publish(text=draft(client_a))
    client.force_login(agency_admin)
    url = reverse("admin:consent_consenttext_change", args=[text.pk])

    page = client.get(url)
    client.post(url, {"title": "Подмена", **TEXT_PARTS})

    assert page.status_code == 200
    assert 'name="title"' not in page.content.decode()  # shown, not editable
    text.refresh_from_db()
    assert text.title == "Согласие"


def test_manager_of_another_client_cannot_see_texts(client, client_a, client_b, manager_b):
    text_a = draft(client_a, title="Текст Альфы")
    draft(client_b, title="Текст Беты")
    client.force_login(manager_b)

    changelist = client.get(reverse(TEXTS_URL)).content.decode()
    foreign = client.get(reverse("admin:consent_consenttext_change", args=[text_a.pk]))
    publish = _action(client, reverse(TEXTS_URL), "publish", text_a)

    assert "Текст Беты" in changelist
    assert "Текст Альфы" not in changelist
    assert foreign.status_code == 302
    assert foreign.url == reverse("admin:index")
    assert publish.status_code == 200
    text_a.refresh_from_db()
    assert text_a.status == ConsentText.Status.DRAFT


# --------------------------------------------------------------------------------------------
# The ledger and the refusals: read-only evidence


def test_ledger_is_read_only_and_searchable(client, client_a, texts_a, customers_a, agency_admin):
    record = consent_record_append(
        client=client_a,
        customer=customers_a[2],
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    other = consent_record_append(
        client=client_a,
        customer=customers_a[3],
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    client.force_login(agency_admin)
    url = reverse("admin:consent_consentrecord_changelist")

    found = client.get(url, {"q": "p2"}).content.decode()
    detail_page = client.get(reverse("admin:consent_consentrecord_change", args=[record.pk]))
    add = client.get(reverse("admin:consent_consentrecord_add"))
    delete = client.get(reverse("admin:consent_consentrecord_delete", args=[record.pk]))

    assert f"/consentrecord/{record.pk}/change/" in found
    # Not a bare "p3": it can occur in the page's random CSRF token.
    assert f"/consentrecord/{other.pk}/change/" not in found
    assert 'name="action"' not in found  # no bulk actions at all
    assert detail_page.status_code == 200
    assert record.hash in detail_page.content.decode()
    assert 'type="submit"' not in detail_page.content.decode().split('id="content-main"')[1]
    assert add.status_code == 403
    assert delete.status_code == 403
    assert ConsentRecord.objects.for_client(client_a).count() == 2


def test_ledger_search_finds_the_person_by_contact_in_any_spelling(
    client, client_a, client_b, texts_a, customers_a, account_manager
):
    """The ledger's search is the shared customer look-up (clients.selectors): a phone or an
    email in any spelling, only among the clients of the signed-in person."""
    mine = consent_record_append(
        client=client_a,
        customer=customers_a[2],
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    other = consent_record_append(
        client=client_a,
        customer=customers_a[3],
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    ingest_records(
        client=client_b,
        kind="customers",
        records=[{"external_id": "b2", "phone": "+79160000002"}],
    )
    publish_texts(client_b)
    foreign = consent_record_append(
        client=client_b,
        customer=Customer.objects.for_client(client_b).get(external_id="b2"),
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    client.force_login(account_manager)
    url = reverse("admin:consent_consentrecord_changelist")
    for term in ("8 (916) 000-00-02", "+7 916 000 00 02", "P2@Example.RU"):
        page = client.get(url, {"q": term}).content.decode()
        assert f"/consentrecord/{mine.pk}/change/" in page, term
        assert f"/consentrecord/{other.pk}/change/" not in page, term
        assert f"/consentrecord/{foreign.pk}/change/" not in page, term


def test_refusals_are_listed_read_only(client, client_a, agency_admin):
    recipient = DataRecipient.objects.create(
        client=client_a, name="Mailgun", kind=DataRecipient.Kind.EMAIL, country="US"
    )
    with pytest.raises(TransferRefused):
        transfer_check(recipient=recipient, operation="email_send:1")
    client.force_login(agency_admin)

    listing = client.get(reverse("admin:consent_transferrefusal_changelist")).content.decode()
    recipients = client.get(reverse("admin:consent_datarecipient_changelist")).content.decode()
    delete_recipient = client.get(
        reverse("admin:consent_datarecipient_delete", args=[recipient.pk])
    )

    assert "email_send:1" in listing
    assert "запрещена: нет уведомления" in recipients
    assert delete_recipient.status_code == 403  # would cascade to the refusals
    assert TransferRefusal.objects.for_client(client_a).count() == 1


def test_notice_country_is_upper_cased_and_shows_its_date(client, client_a, account_manager):
    client.force_login(account_manager)

    response = client.post(
        reverse("admin:consent_crossbordertransfernotice_add"),
        {
            "client": client_a.pk,
            "country": "de",
            "recipient": "Brevo GmbH",
            "notified_at": "30.04.2026",
            "reference": "РКН-1",
        },
    )

    assert response.status_code == 302
    notice = CrossBorderTransferNotice.objects.for_client(client_a).get()
    assert notice.country == "DE"
    assert notice.notified_at == date(2026, 4, 30)
    listing = client.get(reverse("admin:consent_crossbordertransfernotice_changelist"))
    assert "19.05.2026" in listing.content.decode()


# --------------------------------------------------------------------------------------------
# Incidents


def test_incident_list_highlights_overdue_deadlines(client, client_a, client_b, account_manager):
    now = timezone.now()
    Incident.objects.create(
        client=client_a, detected_at=now - timedelta(hours=30), description="утечка А"
    )
    Incident.objects.create(
        client=client_a,
        detected_at=now - timedelta(hours=2),
        description="свежий",
    )
    Incident.objects.create(
        client=client_b, detected_at=now - timedelta(hours=100), description="чужой"
    )
    client.force_login(account_manager)
    url = reverse("admin:consent_incident_changelist")

    content = client.get(url).content.decode()
    overdue_only = client.get(url, {"overdue": "yes"}).content.decode()

    assert content.count("ПРОСРОЧЕНО") == 1  # the 24-hour notice of the 30-hour-old incident
    assert "осталось 21 ч" in content  # the fresh one: 22 h minus a bit
    assert overdue_only.count("/change/") == 1
    assert "ПРОСРОЧЕНО" in overdue_only


def test_incident_status_needs_its_date_and_incidents_are_not_deleted(
    client, client_a, agency_admin
):
    now = timezone.now()
    incident = Incident.objects.create(
        client=client_a, detected_at=now - timedelta(hours=5), description="утечка"
    )
    client.force_login(agency_admin)
    url = reverse("admin:consent_incident_change", args=[incident.pk])
    local = timezone.localtime(incident.detected_at)

    refused = client.post(
        url,
        {
            "detected_at_0": local.strftime("%d.%m.%Y"),
            "detected_at_1": local.strftime("%H:%M:%S"),
            "description": "утечка",
            "status": Incident.Status.NOTIFIED,
        },
    )
    delete = client.get(reverse("admin:consent_incident_delete", args=[incident.pk]))

    assert refused.status_code == 200
    assert "Укажите, когда направлено уведомление РКН." in refused.content.decode()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN
    assert delete.status_code == 403
