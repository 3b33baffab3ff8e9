"""On PostgreSQL the consent ledger refuses TRUNCATE (a statement trigger: TRUNCATE passes the
row triggers), and blanking for erasure goes through one function, ``consent_record_erase(id)``
(SECURITY DEFINER, owned by the tables' owner): it blanks the personal fields of one record
exactly as the app did and refuses a record that is erased already or is itself an erasure note.

The row trigger now lets through only that function's UPDATE: its transaction-local flag
(``cvm.consent_erasure``, set by the function's own SET clause), run with the owner's rights,
and the exact shape of a blanking of a record not erased yet. Anything else, setting the flag by
hand from the app's role included, is refused. In production the app's role has no UPDATE,
DELETE or TRUNCATE on the table at all, only EXECUTE on the function (README, "Database roles").
SQLite has neither triggers nor functions: there the app blanks through the ORM.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_record_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('cvm.consent_erasure', true) = 'on'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
       AND OLD.erased_at IS NULL
       AND OLD.action <> 'erasure'
       AND NEW.erased_at IS NOT NULL
       AND NEW.ip IS NULL
       AND NEW.user_agent = ''
       AND NEW.url = ''
       AND NEW.form_id = ''
       AND NEW.subject_id = ''
       AND NEW.details = '{}'::jsonb
       AND NEW.id = OLD.id
       AND NEW.client_id = OLD.client_id
       AND NEW.customer_id IS NOT DISTINCT FROM OLD.customer_id
       AND NEW.purpose_id IS NOT DISTINCT FROM OLD.purpose_id
       AND NEW.text_id IS NOT DISTINCT FROM OLD.text_id
       AND NEW.action = OLD.action
       AND NEW.at = OLD.at
       AND NEW.source = OLD.source
       AND NEW.prev_hash = OLD.prev_hash
       AND NEW.hash = OLD.hash
       AND NEW.recorded_at = OLD.recorded_at
    THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.erased_at IS NOT NULL THEN
        RAISE EXCEPTION 'consent_consentrecord: record % is erased already', OLD.id;
    END IF;
    RAISE EXCEPTION 'consent_consentrecord is append-only (record %): personal fields are '
        'blanked only by consent_record_erase()', OLD.id;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_record_no_truncate
    BEFORE TRUNCATE ON consent_consentrecord
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse_truncate();

CREATE FUNCTION consent_record_erase(p_record_id bigint) RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, {schema}, pg_temp
    SET cvm.consent_erasure = 'on'
AS $$
DECLARE
    v_action text;
    v_erased_at timestamptz;
BEGIN
    SELECT action, erased_at INTO v_action, v_erased_at
        FROM consent_consentrecord WHERE id = p_record_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consent record % does not exist', p_record_id;
    END IF;
    IF v_erased_at IS NOT NULL THEN
        RAISE EXCEPTION 'consent record % is erased already', p_record_id;
    END IF;
    IF v_action = 'erasure' THEN
        RAISE EXCEPTION 'consent record % is an erasure note: nothing to blank', p_record_id;
    END IF;
    UPDATE consent_consentrecord
        SET ip = NULL, user_agent = '', url = '', form_id = '', subject_id = '',
            details = '{}'::jsonb, erased_at = now()
        WHERE id = p_record_id
        RETURNING erased_at INTO v_erased_at;
    RETURN v_erased_at;
END;
$$;
REVOKE ALL ON FUNCTION consent_record_erase(bigint) FROM PUBLIC;
"""

DROP = """
DROP FUNCTION IF EXISTS consent_record_erase(bigint);
DROP TRIGGER IF EXISTS consent_record_no_truncate ON consent_consentrecord;
CREATE OR REPLACE FUNCTION consent_record_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('cvm.consent_erasure', true) = 'on'
       AND NEW.erased_at IS NOT NULL
       AND NEW.id = OLD.id
       AND NEW.client_id = OLD.client_id
       AND NEW.customer_id IS NOT DISTINCT FROM OLD.customer_id
       AND NEW.purpose_id IS NOT DISTINCT FROM OLD.purpose_id
       AND NEW.text_id IS NOT DISTINCT FROM OLD.text_id
       AND NEW.action = OLD.action
       AND NEW.at = OLD.at
       AND NEW.source = OLD.source
       AND NEW.prev_hash = OLD.prev_hash
       AND NEW.hash = OLD.hash
       AND NEW.recorded_at = OLD.recorded_at
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_consentrecord is append-only (record %)', OLD.id;
END;
$$ LANGUAGE plpgsql;
"""


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = cursor.fetchone()[0]
    schema_editor.execute(CREATE.replace("{schema}", connection.ops.quote_name(schema)), params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0003_consent_ledger_trigger"),
        ("agency", "0004_append_only_refuse_truncate"),
    ]

    operations = [migrations.RunPython(create, drop)]
