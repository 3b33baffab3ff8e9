"""The consent ledger anchored outside its table: TRUNCATE refused, signed checkpoints in the
audit log that show a truncated ledger and a deleted tail, blanking only through the database
function, and the production role that cannot UPDATE the ledger."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from agency.models import AuditLogEntry
from consent import tasks
from consent.checkpoints import CHECKPOINT_ACTION, Checkpoint, consent_checkpoints
from consent.models import ConsentRecord
from consent.services import (
    Evidence,
    consent_checkpoint_write,
    consent_log_verify,
    consent_record_append,
    consent_records_erase,
)

pytestmark = pytest.mark.django_db


def grant(client, customer, purpose="email_marketing", **kw):
    return consent_record_append(
        client=client,
        customer=customer,
        purpose_code=purpose,
        action="granted",
        source="web_form",
        evidence=Evidence(ip="10.0.0.1", user_agent="UA", url="https://a.ru/form"),
        **kw,
    )


def sql(statement: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def settle():
    """Run the deferred foreign-key checks of the test's open transaction now: PostgreSQL
    refuses TRUNCATE and ALTER TABLE on a table with pending trigger events."""
    sql("SET CONSTRAINTS ALL IMMEDIATE")


def refused(statement: str, params=None) -> str:
    """Run a statement that the database must refuse (in a savepoint); its error text."""
    with pytest.raises(DatabaseError) as error, transaction.atomic():
        sql(statement, params)
    return str(error.value)


def ledger(client):
    return ConsentRecord.objects.for_client(client).order_by("id")


def verify_command(client, *args) -> tuple[int, str]:
    """verify_consent_log's exit code and output."""
    import io

    out = io.StringIO()
    try:
        call_command("verify_consent_log", client.slug, *args, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


# --------------------------------------------------------------------------------------------
# TRUNCATE


def test_truncate_of_the_ledger_and_the_audit_log_is_refused(client_a, texts_a, customers_a):
    for person in customers_a:
        grant(client_a, person)
    consent_checkpoint_write(client=client_a)
    settle()

    assert "append-only: TRUNCATE refused" in refused("TRUNCATE consent_consentrecord")
    assert "append-only: TRUNCATE refused" in refused("TRUNCATE agency_auditlogentry")

    assert ledger(client_a).count() == 5
    assert len(consent_checkpoints(client=client_a)) == 1


def test_a_truncated_ledger_is_found_against_the_checkpoint(client_a, texts_a, customers_a):
    for person in customers_a:
        grant(client_a, person)
    consent_checkpoint_write(client=client_a)
    # The table's owner (the tests run as a superuser) can switch the guard off: this is what
    # the checkpoint is for.
    settle()
    sql("ALTER TABLE consent_consentrecord DISABLE TRIGGER consent_record_no_truncate")
    sql("TRUNCATE consent_consentrecord")
    sql("ALTER TABLE consent_consentrecord ENABLE TRIGGER consent_record_no_truncate")

    result = consent_log_verify(client=client_a)
    assert result.ok is False
    assert "усечён" in result.reason
    assert "0 записей" in result.reason
    assert "насчитывала 5" in result.reason
    code, out = verify_command(client_a)
    assert code == 1
    assert "НАРУШЕНО" in out
    assert "усечён" in out


# --------------------------------------------------------------------------------------------
# The deleted tail


def _delete_newest(client, n: int) -> list[int]:
    """Delete the client's newest n records as a superuser who disabled the row trigger."""
    ids = list(ledger(client).values_list("id", flat=True))[-n:]
    settle()
    sql("ALTER TABLE consent_consentrecord DISABLE TRIGGER consent_record_no_update_delete")
    sql("DELETE FROM consent_consentrecord WHERE id = ANY(%s)", [ids])
    sql("ALTER TABLE consent_consentrecord ENABLE TRIGGER consent_record_no_update_delete")
    return ids


def test_the_chain_alone_cannot_see_a_deleted_tail(client_a, texts_a, customers_a):
    """Why the checkpoints exist: without one, what is left is still a valid chain."""
    for person in customers_a:
        grant(client_a, person)
    _delete_newest(client_a, 2)
    assert consent_log_verify(client=client_a).ok is True


def test_a_deleted_tail_is_found_after_a_checkpoint(client_a, texts_a, customers_a):
    for person in customers_a:
        grant(client_a, person)
    checkpoint = consent_checkpoint_write(client=client_a)
    assert (checkpoint.count, checkpoint.head_id) == (5, ledger(client_a).last().pk)
    ok = consent_log_verify(client=client_a)
    assert (ok.ok, ok.checked, ok.checkpoints) == (True, 5, 1)
    code, out = verify_command(client_a)
    assert code == 0
    assert "контрольными точками: 1" in out

    deleted = _delete_newest(client_a, 2)
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.first_broken_id) == (False, deleted[-1])
    assert "усечён" in result.reason
    assert "насчитывала 5" in result.reason
    code, out = verify_command(client_a)
    assert code == 1
    assert f"#{deleted[-1]}" in out

    # New records appended after the deletion chain onto what is left, and make the ledger as
    # long as before: the checkpointed newest record is still missing.
    grant(client_a, customers_a[0], purpose="sms_marketing")
    grant(client_a, customers_a[1], purpose="sms_marketing")
    grant(client_a, customers_a[2], purpose="sms_marketing")
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.first_broken_id) == (False, deleted[-1])
    assert "хвост журнала удалён" in result.reason


def test_a_rewritten_chain_is_found_against_the_checkpoint(client_a, texts_a, customers_a):
    """Someone who recomputes every hash after an edit still does not match the checkpoint."""
    from consent.services import consent_record_hash

    for person in customers_a[:3]:
        grant(client_a, person)
    consent_checkpoint_write(client=client_a)
    records = list(ledger(client_a))
    sql("SET LOCAL session_replication_role = replica")
    prev = ""
    for record in records:
        if record.pk == records[1].pk:
            record.action = "withdrawn"
        record.prev_hash = prev
        record.hash = prev = consent_record_hash(record, prev)
        sql(
            "UPDATE consent_consentrecord SET action = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [record.action, record.prev_hash, record.hash, record.pk],
        )
    sql("SET LOCAL session_replication_role = origin")
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.first_broken_id) == (False, records[-1].pk)
    assert "контрольной точкой" in result.reason


def test_checkpoints_are_written_once_per_chain_state_by_the_daily_fan_out(
    client_a, client_b, texts_a, customers_a, monkeypatch
):
    sent = []
    monkeypatch.setattr(tasks.consent_checkpoint_task, "delay", sent.append)
    assert tasks.consent_checkpoints_daily_task() == sorted([client_a.pk, client_b.pk])
    assert sorted(sent) == sorted([client_a.pk, client_b.pk])

    grant(client_a, customers_a[0])
    first = tasks.consent_checkpoint_task(client_a.pk)
    # Delivered twice, or nothing appended since: nothing new is written.
    assert tasks.consent_checkpoint_task(client_a.pk) == first
    assert tasks.consent_checkpoint_task(client_b.pk) is None  # an empty ledger
    grant(client_a, customers_a[1])
    second = tasks.consent_checkpoint_task(client_a.pk)
    assert second != first
    entries = AuditLogEntry.objects.filter(action=CHECKPOINT_ACTION).order_by("id")
    assert [e.pk for e in entries] == [first, second]
    assert {e.client_id for e in entries} == {client_a.pk}
    assert [e.details["count"] for e in entries] == [1, 2]


# --------------------------------------------------------------------------------------------
# The signed digest


def test_the_digest_signature_verifies_and_changes_with_the_ledger(
    client_a, texts_a, customers_a, settings
):
    settings.LEDGER_SIGNING_KEY = "ledger-key-1"
    grant(client_a, customers_a[0])
    first = consent_checkpoint_write(client=client_a)
    digest = json.loads(json.dumps(first.as_digest()))
    assert digest["algorithm"] == "HMAC-SHA256"
    assert len(digest["signature"]) == 64
    assert Checkpoint.from_digest(digest).signature_ok()

    forged = {**digest, "count": digest["count"] + 1}
    assert not Checkpoint.from_digest(forged).signature_ok()

    grant(client_a, customers_a[1])
    second = consent_checkpoint_write(client=client_a)
    assert second.signature != first.signature
    assert (second.count, second.head_hash) != (first.count, first.head_hash)
    assert Checkpoint.from_digest(second.as_digest()).signature_ok()

    # Another key does not verify it; after a rotation the old key stays as a fallback.
    settings.LEDGER_SIGNING_KEY = "ledger-key-2"
    assert not second.signature_ok()
    assert not consent_log_verify(client=client_a).ok
    settings.LEDGER_SIGNING_KEY_FALLBACKS = ["ledger-key-1"]
    assert second.signature_ok()
    assert consent_log_verify(client=client_a).ok


def test_a_forged_checkpoint_in_the_audit_log_is_named(client_a, texts_a, customers_a):
    """Someone with the database but not the key hides a deleted tail behind a new
    checkpoint: it does not verify."""
    for person in customers_a[:3]:
        grant(client_a, person)
    _delete_newest(client_a, 1)
    head = ledger(client_a).last()
    fake = Checkpoint(
        client_id=client_a.pk,
        client=client_a.slug,
        date=timezone.localdate().isoformat(),
        at=timezone.now().isoformat(),
        count=2,
        head_id=head.pk,
        head_hash=head.hash,
        signature="0" * 64,
    )
    AuditLogEntry.objects.create(
        action=CHECKPOINT_ACTION,
        source="system",
        client_id=client_a.pk,
        details={**fake.payload(), "signature": fake.signature},
    )
    result = consent_log_verify(client=client_a)
    assert result.ok is False
    assert "подпись неверна" in result.reason


def test_a_kept_digest_finds_a_tail_deleted_with_its_checkpoints(
    client_a, texts_a, customers_a, tmp_path
):
    """A client's downloaded digest still shows the deletion when the audit log lost the
    checkpoint too (a superuser can do both)."""
    for person in customers_a:
        grant(client_a, person)
    checkpoint = consent_checkpoint_write(client=client_a)
    kept = tmp_path / "digest.json"
    kept.write_text(json.dumps(checkpoint.as_digest()))
    deleted = _delete_newest(client_a, 1)
    sql("SET LOCAL session_replication_role = replica")
    sql("DELETE FROM agency_auditlogentry WHERE action = %s", [CHECKPOINT_ACTION])
    sql("SET LOCAL session_replication_role = origin")

    assert verify_command(client_a)[0] == 0
    code, out = verify_command(client_a, "--digest", str(kept))
    assert code == 1
    assert f"#{deleted[0]}" in out


def test_portal_lists_and_serves_the_signed_digests(
    client, client_a, client_b, texts_a, customers_a, portal_owner_a
):
    grant(client_a, customers_a[0])
    checkpoint = consent_checkpoint_write(client=client_a)
    client.force_login(portal_owner_a)
    page = client.get(f"/portal/{client_a.slug}/consent-ledger/")
    assert page.status_code == 200
    url = f"/portal/{client_a.slug}/consent-ledger/{checkpoint.entry_id}.json"
    assert url in page.content.decode()
    assert "Контрольные точки журнала согласий" in page.content.decode()

    response = client.get(url)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    digest = json.loads(response.content)
    assert digest["head_hash"] == ledger(client_a).last().hash
    assert digest["count"] == 1
    assert digest["client"] == client_a.slug
    assert Checkpoint.from_digest(digest).signature_ok()

    # Another client's checkpoint, or a user of another client: the same 404.
    grant_b = consent_checkpoint_write(client=client_b)
    assert grant_b is None
    other = AuditLogEntry.objects.create(
        action=CHECKPOINT_ACTION, source="system", client_id=client_b.pk, details={}
    )
    assert client.get(f"/portal/{client_a.slug}/consent-ledger/{other.pk}.json").status_code == 404
    assert client.get(f"/portal/{client_b.slug}/consent-ledger/").status_code == 404


# --------------------------------------------------------------------------------------------
# Blanking only through the database function


def test_setting_the_erasure_flag_directly_is_refused(client_a, texts_a, customers_a):
    record = grant(client_a, customers_a[0])
    error = refused("UPDATE consent_consentrecord SET erased_at = now() WHERE id = %s", [record.pk])
    assert "append-only" in error
    refused(
        "UPDATE consent_consentrecord SET erased_at = now(), ip = NULL, user_agent = '', "
        "url = '', details = '{}'::jsonb WHERE id = %s",
        [record.pk],
    )
    record.refresh_from_db()
    assert (record.erased_at, record.ip, record.user_agent) == (None, "10.0.0.1", "UA")


def test_an_erased_record_cannot_be_blanked_or_rewritten_again(client_a, texts_a, customers_a):
    person = customers_a[0]
    record = grant(client_a, person)
    erasure = consent_records_erase(client=client_a, customer=person, reason="запрос №7")
    # The flag the function sets for itself, set by hand: still no rewriting of the evidence.
    sql("SET LOCAL cvm.consent_erasure = 'on'")
    for statement in (
        "UPDATE consent_consentrecord SET ip = '192.0.2.1' WHERE id = %s",
        "UPDATE consent_consentrecord SET action = 'withdrawn' WHERE id = %s",
        "UPDATE consent_consentrecord SET erased_at = now() WHERE id = %s",
    ):
        assert "erased already" in refused(statement, [record.pk])
    sql("SET LOCAL cvm.consent_erasure = 'off'")
    assert "erased already" in refused("SELECT consent_record_erase(%s)", [record.pk])
    assert "erasure note" in refused("SELECT consent_record_erase(%s)", [erasure.pk])
    assert consent_log_verify(client=client_a).ok


def test_the_erasure_path_blanks_through_the_function_and_keeps_proof(
    client_a, texts_a, customers_a
):
    person = customers_a[0]
    first = grant(client_a, person)
    second = grant(client_a, person, purpose="sms_marketing")
    other = grant(client_a, customers_a[1])
    consent_checkpoint_write(client=client_a)
    erasure = consent_records_erase(client=client_a, customer=person, reason="запрос №1")
    assert erasure.details["erased_record_ids"] == [first.pk, second.pk]
    assert set(erasure.details["kept_hashes"]) == {str(first.pk), str(second.pk)}
    for record in (first, second):
        record.refresh_from_db()
        assert record.erased_at is not None
        assert (record.ip, record.user_agent, record.url, record.details) == (None, "", "", {})
    assert erasure.at == first.erased_at
    other.refresh_from_db()
    assert other.erased_at is None
    assert other.ip == "10.0.0.1"
    assert consent_records_erase(client=client_a, customer=person) is None  # nothing left
    assert consent_log_verify(client=client_a).ok

    # Rewriting what erasure kept of a record (as a superuser past the trigger) is named.
    sql("SET LOCAL session_replication_role = replica")
    sql("UPDATE consent_consentrecord SET at = at - interval '1 day' WHERE id = %s", [second.pk])
    sql("SET LOCAL session_replication_role = origin")
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.first_broken_id) == (False, second.pk)
    assert "удалённая запись изменена" in result.reason


def test_the_production_role_cannot_update_but_can_erase(client_a, texts_a, customers_a):
    """The app's role as README describes it: INSERT and SELECT on the ledger, EXECUTE on the
    function, no UPDATE, DELETE or TRUNCATE. (The role is created in the test's transaction
    and rolled back with it.)"""
    person = customers_a[0]
    record = grant(client_a, person)
    keep = grant(client_a, customers_a[1])
    sql("CREATE ROLE cvm_app_test NOLOGIN")
    sql("GRANT USAGE ON SCHEMA public TO cvm_app_test")
    sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO cvm_app_test")
    sql("GRANT INSERT ON consent_consentrecord TO cvm_app_test")
    sql("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO cvm_app_test")
    sql("GRANT EXECUTE ON FUNCTION consent_record_erase(bigint) TO cvm_app_test")
    sql("SET LOCAL ROLE cvm_app_test")
    try:
        assert "permission denied" in refused(
            "UPDATE consent_consentrecord SET erased_at = now() WHERE id = %s", [keep.pk]
        )
        assert "permission denied" in refused("DELETE FROM consent_consentrecord")
        settle()
        assert "permission denied" in refused("TRUNCATE consent_consentrecord")
        # The app's own erasure path works as this role.
        erasure = consent_records_erase(client=client_a, customer=person, reason="запрос №2")
        assert erasure.details["erased_record_ids"] == [record.pk]
    finally:
        sql("RESET ROLE")
    record.refresh_from_db()
    assert record.erased_at is not None
    assert record.ip is None
    assert consent_log_verify(client=client_a).ok

    # Even granted UPDATE by mistake and with the function's flag set by hand, the role cannot
    # blank a record itself: the trigger wants the owner's rights (the function's).
    sql("GRANT UPDATE ON consent_consentrecord TO cvm_app_test")
    sql("SET LOCAL ROLE cvm_app_test")
    sql("SET LOCAL cvm.consent_erasure = 'on'")
    try:
        assert "append-only" in refused(
            "UPDATE consent_consentrecord SET erased_at = now(), ip = NULL, user_agent = '', "
            "url = '', form_id = '', subject_id = '', details = '{}'::jsonb WHERE id = %s",
            [keep.pk],
        )
    finally:
        sql("RESET ROLE")
        sql("SET LOCAL cvm.consent_erasure = 'off'")
    keep.refresh_from_db()
    assert keep.erased_at is None


def test_blanked_fields_refilled_later_are_named(client_a, texts_a, customers_a):
    person = customers_a[0]
    record = grant(client_a, person)
    consent_records_erase(client=client_a, customer=person)
    sql("SET LOCAL session_replication_role = replica")
    sql("UPDATE consent_consentrecord SET ip = '198.51.100.1' WHERE id = %s", [record.pk])
    sql("SET LOCAL session_replication_role = origin")
    result = consent_log_verify(client=client_a)
    assert (result.ok, result.first_broken_id) == (False, record.pk)
    assert "не пусты" in result.reason


def test_checkpoint_dates_are_the_clients_day(client_a, texts_a, customers_a):
    grant(client_a, customers_a[0])
    # 22:30 UTC is already the next day in Moscow.
    late = timezone.now().replace(hour=22, minute=30) - timedelta(days=1)
    checkpoint = consent_checkpoint_write(client=client_a, now=late)
    assert checkpoint.date == (late + timedelta(hours=3)).date().isoformat()
