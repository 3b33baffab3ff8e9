"""On PostgreSQL the audit log refuses UPDATE and DELETE at the database level too."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION agency_auditlog_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'agency_auditlogentry is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER agency_auditlog_no_update_delete
    BEFORE UPDATE OR DELETE ON agency_auditlogentry
    FOR EACH ROW EXECUTE FUNCTION agency_auditlog_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS agency_auditlog_no_update_delete ON agency_auditlogentry;
DROP FUNCTION IF EXISTS agency_auditlog_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("agency", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
