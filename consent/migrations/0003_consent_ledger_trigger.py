"""On PostgreSQL the consent ledger refuses UPDATE and DELETE, except the erasure service's
blanking of personal fields (it sets cvm.consent_erasure for its transaction)."""

from django.db import migrations

CREATE = """
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
CREATE TRIGGER consent_record_no_update_delete
    BEFORE UPDATE OR DELETE ON consent_consentrecord
    FOR EACH ROW EXECUTE FUNCTION consent_record_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS consent_record_no_update_delete ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_record_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_seed_purposes")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
