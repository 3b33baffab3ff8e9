from decimal import Decimal

from django.db import migrations

TIERS = [
    {
        "code": "foundation",
        "name": "Foundation",
        "position": 1,
        "ad_spend_min": Decimal("0"),
        "ad_spend_max": Decimal("500000"),
        "setup_fee_min": Decimal("150000"),
        "setup_fee_max": Decimal("250000"),
        "monthly_fee_min": Decimal("80000"),
        "monthly_fee_max": Decimal("120000"),
        "max_segments": 5,
        "max_trigger_chains": 3,
    },
    {
        "code": "advanced",
        "name": "Advanced CVM",
        "position": 2,
        "ad_spend_min": Decimal("500000"),
        "ad_spend_max": Decimal("2000000"),
        "setup_fee_min": Decimal("400000"),
        "setup_fee_max": Decimal("700000"),
        "monthly_fee_min": Decimal("250000"),
        "monthly_fee_max": Decimal("400000"),
        "max_segments": 25,
        "max_trigger_chains": 10,
        "predictive": True,
        "omnichannel": True,
        "value_bidding": True,
        "cohorts": True,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "position": 3,
        "ad_spend_min": Decimal("2000000"),
        "ad_spend_max": None,
        "setup_fee_min": Decimal("1000000"),
        "setup_fee_max": Decimal("2000000"),
        "monthly_fee_min": Decimal("600000"),
        "monthly_fee_max": Decimal("1000000"),
        "max_segments": None,
        "max_trigger_chains": None,
        "predictive": True,
        "omnichannel": True,
        "value_bidding": True,
        "cohorts": True,
        "incrementality": True,
        "programmatic": True,
    },
]


def seed_tiers(apps, schema_editor):
    Tier = apps.get_model("clients", "Tier")
    for row in TIERS:
        values = dict(row)
        Tier.objects.update_or_create(code=values.pop("code"), defaults=values)


def unseed_tiers(apps, schema_editor):
    Tier = apps.get_model("clients", "Tier")
    Tier.objects.filter(code__in=[t["code"] for t in TIERS], clients__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("clients", "0001_initial")]

    operations = [migrations.RunPython(seed_tiers, unseed_tiers)]
