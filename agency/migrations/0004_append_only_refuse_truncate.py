"""On PostgreSQL append-only tables refuse TRUNCATE too: it passes the row triggers that refuse
UPDATE and DELETE. One statement-level trigger function, used by every append-only table (the
audit log here, the consent ledger in consent's migrations)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION append_only_refuse_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER agency_auditlog_no_truncate
    BEFORE TRUNCATE ON agency_auditlogentry
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse_truncate();
"""

DROP = """
DROP TRIGGER IF EXISTS agency_auditlog_no_truncate ON agency_auditlogentry;
DROP FUNCTION IF EXISTS append_only_refuse_truncate();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("agency", "0003_staff_groups")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
