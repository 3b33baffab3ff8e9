"""The consent ledger: the one answer to "may we?", the hash chain, append-only, erasure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.models import Customer
from consent.models import ConsentRecord, ConsentText
from consent.selectors import (
    consent_is_granted,
    customers_consented_for,
    latest_consent_actions_sql,
)
from consent.services import (
    ConsentError,
    Evidence,
    consent_log_verify,
    consent_record_append,
    consent_records_erase,
    consent_subject_link,
    consent_text_create,
    consent_text_publish,
)

pytestmark = pytest.mark.django_db


def grant(client, customer, purpose="email_marketing", at=None, **kw):
    return consent_record_append(
        client=client,
        customer=customer,
        purpose_code=purpose,
        action="granted",
        source="web_form",
        at=at,
        **kw,
    )


def withdraw(client, customer, purpose="email_marketing", at=None, **kw):
    return consent_record_append(
        client=client,
        customer=customer,
        purpose_code=purpose,
        action="withdrawn",
        source="unsubscribe_link",
        at=at,
        **kw,
    )


def test_no_record_means_no(client_a, texts_a, customers_a):
    assert consent_is_granted(customer=customers_a[0], purpose_code="email_marketing") is False


def test_latest_by_time_wins_not_latest_written(client_a, texts_a, customers_a):
    person = customers_a[0]
    now = timezone.now()
    grant(client_a, person, at=now - timedelta(days=2))
    withdraw(client_a, person, at=now - timedelta(days=1))
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False
    # A grant written later but dated earlier (a CRM back-fill) does not override.
    grant(client_a, person, at=now - timedelta(days=3))
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False
    grant(client_a, person, at=now)
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is True
    # Purposes are independent.
    assert consent_is_granted(customer=person, purpose_code="sms_marketing") is False


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["granted", "withdrawn"]),
        st.integers(min_value=0, max_value=50),
        st.booleans(),  # recorded on the person's linked cookie subject instead of the person
    ),
    min_size=0,
    max_size=8,
)


def granted_by_set_sql(client, purpose_code: str) -> set[int]:
    """The customers the set-based relation (audience exports) says have consent."""
    members = "(SELECT id AS customer_id FROM clients_customer WHERE client_id = %s)"
    sql, params = latest_consent_actions_sql(
        client_id=client.pk, purpose_code=purpose_code, customers="members"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH members AS {members} SELECT customer_id FROM ({sql}) latest "  # noqa: S608
            "WHERE action = 'granted'",
            [client.pk, *params],
        )
        return {row[0] for row in cursor.fetchall()}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(ACTIONS, min_size=5, max_size=5))
def test_filter_and_selector_agree_with_the_rule(client_a, texts_a, customers_a, events):
    """For any history (on the person or their linked cookie), the queryset filter, the
    set-based relation of audience exports, the selector and the rule give the same answer."""
    ConsentRecord.objects.for_client(client_a)  # scoped
    base = timezone.now() - timedelta(days=100)
    expected = set()
    with transaction.atomic():
        for person, history in zip(customers_a, events, strict=True):
            latest = None
            subject = f"cookie-{person.pk}"
            consent_subject_link(client=client_a, subject_id=subject, customer=person)
            for i, (action, day, on_cookie) in enumerate(history):
                at = base + timedelta(days=day)
                consent_record_append(
                    client=client_a,
                    customer=None if on_cookie else person,
                    subject_id=subject if on_cookie else "",
                    purpose_code="ad_audiences",
                    action=action,
                    source="api",
                    at=at,
                )
                if latest is None or (at, i) >= latest[:2]:
                    latest = (at, i, action)
            if latest and latest[2] == "granted":
                expected.add(person.pk)
        filtered = customers_consented_for(Customer.objects.for_client(client_a), "ad_audiences")
        assert set(filtered.values_list("pk", flat=True)) == expected
        assert granted_by_set_sql(client_a, "ad_audiences") == expected
        for person in customers_a:
            assert consent_is_granted(customer=person, purpose_code="ad_audiences") == (
                person.pk in expected
            )
        transaction.set_rollback(True)


def test_linked_cookie_subject_counts_for_the_customer(client_a, texts_a, customers_a):
    person = customers_a[1]
    consent_record_append(
        client=client_a,
        subject_id="cookie-123",
        purpose_code="analytics_cookies",
        action="granted",
        source="cookie_banner",
    )
    assert consent_is_granted(customer=person, purpose_code="analytics_cookies") is False
    consent_subject_link(client=client_a, subject_id="cookie-123", customer=person)
    assert consent_is_granted(customer=person, purpose_code="analytics_cookies") is True
    consented = customers_consented_for(Customer.objects.for_client(client_a), "analytics_cookies")
    assert list(consented.values_list("pk", flat=True)) == [person.pk]
    assert granted_by_set_sql(client_a, "analytics_cookies") == {person.pk}


def test_grant_needs_a_published_text(client_a, customers_a):
    with pytest.raises(ConsentError) as error:
        grant(client_a, customers_a[0])
    assert error.value.code == "no_published_text"
    assert ConsentRecord.objects.for_client(client_a).count() == 0


def test_publishing_refuses_missing_parts_and_freezes_the_text(client_a):
    draft = consent_text_create(
        client=client_a, purpose_code="sms_marketing", title="SMS", operator_name="ООО Альфа"
    )
    with pytest.raises(ConsentError) as error:
        consent_text_publish(text=draft)
    assert "оператор: адрес" in str(error.value)
    assert "как отозвать" in str(error.value)
    draft.refresh_from_db()
    assert draft.status == ConsentText.Status.DRAFT
    for name in ConsentText.REQUIRED_PARTS:
        setattr(draft, name, getattr(draft, name) or "заполнено")
    draft.save()
    published = consent_text_publish(text=draft)
    assert published.is_published
    published.title = "другое"
    with pytest.raises(PermissionError):
        published.save()
    second = consent_text_create(client=client_a, purpose_code="sms_marketing", title="v2")
    assert second.version == 2


def test_chain_verifies_and_detects_a_direct_edit(client_a, texts_a, customers_a):
    for person in customers_a:
        grant(
            client_a, person, evidence=Evidence(ip="10.0.0.1", user_agent="UA", url="https://a.ru")
        )
    withdraw(client_a, customers_a[0])
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.checked) == (True, 6)

    victim = ConsentRecord.objects.for_client(client_a).order_by("id")[2]
    with connection.cursor() as cursor:
        # A database superuser bypassing the append-only trigger.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE consent_consentrecord SET action = 'withdrawn' WHERE id = %s", [victim.pk]
        )
        cursor.execute("SET LOCAL session_replication_role = origin")
    broken = consent_log_verify(client=client_a)
    assert (broken.ok, broken.first_broken_id) == (False, victim.pk)
    assert "хеш" in broken.reason


def test_orm_and_sql_updates_are_refused(client_a, texts_a, customers_a):
    record = grant(client_a, customers_a[0])
    with pytest.raises(PermissionError):
        ConsentRecord.objects.for_client(client_a).update(action="withdrawn")
    with pytest.raises(PermissionError):
        record.save()
    with pytest.raises(PermissionError):
        record.delete()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE consent_consentrecord SET source = 'api' WHERE id = %s", [record.pk])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_consentrecord WHERE id = %s", [record.pk])
    record.refresh_from_db()
    assert record.source == "web_form"


def test_erasure_keeps_proof_and_the_chain(client_a, texts_a, customers_a):
    person = customers_a[0]
    grant(client_a, person, evidence=Evidence(ip="10.1.1.1", user_agent="Mozilla"))
    withdraw(client_a, person)
    grant(client_a, customers_a[1])
    erasure = consent_records_erase(client=client_a, customer=person, reason="запрос №1")
    assert erasure.action == ConsentRecord.Action.ERASURE
    erased = (
        ConsentRecord.objects.for_client(client_a).filter(customer=person).exclude(pk=erasure.pk)
    )
    assert erased.count() == 2
    assert all(r.erased_at and r.ip is None and r.user_agent == "" for r in erased)
    assert sorted(erasure.details["erased_record_ids"]) == sorted(r.pk for r in erased)
    assert consent_log_verify(client=client_a).ok

    # Blanking without an erasure record naming it is caught.
    other = ConsentRecord.objects.for_client(client_a).get(customer=customers_a[1])
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL cvm.consent_erasure = 'on'")
        cursor.execute(
            "UPDATE consent_consentrecord SET erased_at = now(), ip = NULL WHERE id = %s",
            [other.pk],
        )
        cursor.execute("SET LOCAL cvm.consent_erasure = 'off'")
    check = consent_log_verify(client=client_a)
    assert (check.ok, check.first_broken_id) == (False, other.pk)


def test_verify_command_names_the_first_broken_record(client_a, texts_a, customers_a, capsys):
    grant(client_a, customers_a[0])
    call_command("verify_consent_log", client_a.slug)
    assert "OK" in capsys.readouterr().out
    record = grant(client_a, customers_a[1])
    with connection.cursor() as cursor:
        # A database superuser bypassing the append-only trigger.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE consent_consentrecord SET ip = '1.2.3.4' WHERE id = %s", [record.pk])
        cursor.execute("SET LOCAL session_replication_role = origin")
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_consent_log", client_a.slug)
    assert exit_info.value.code == 1
    assert f"#{record.pk}" in capsys.readouterr().out
