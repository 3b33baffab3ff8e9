"""A destination's address and country are no longer tenant data (SSRF, issue 11).

The platform's address is deployment configuration (``<PROVIDER>_BASE_URL``) and the data
recipient's country is the platform operator's (``audiences.models.PLATFORM_COUNTRY``: every
platform is run by a Russian company). The data recipients of existing destinations get their
platform's country back before the per-destination columns go; the reverse copies the
recipients' countries into the restored ``country`` column (the base URLs stay empty: the
settings' addresses).
"""

from django.db import migrations, models

PLATFORM_COUNTRY = {"yandex_audiences": "RU", "vk_ads": "RU", "mytarget": "RU"}


def recipients_in_platform_country(apps, schema_editor):
    Destination = apps.get_model("audiences", "Destination")
    DataRecipient = apps.get_model("consent", "DataRecipient")
    for platform, country in PLATFORM_COUNTRY.items():
        recipient_ids = Destination.objects.filter(platform=platform).values("recipient_id")
        DataRecipient.objects.filter(pk__in=recipient_ids).exclude(country=country).update(
            country=country
        )


def destination_country_from_recipient(apps, schema_editor):
    Destination = apps.get_model("audiences", "Destination")
    for destination in Destination.objects.select_related("recipient").iterator():
        destination.country = destination.recipient.country
        destination.save(update_fields=["country"])


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0003_syncrun_heartbeat_at"),
        ("consent", "0003_consent_ledger_trigger"),
    ]

    operations = [
        migrations.RunPython(recipients_in_platform_country, destination_country_from_recipient),
        migrations.RemoveField(model_name="destination", name="base_url"),
        migrations.RemoveField(model_name="destination", name="country"),
    ]
