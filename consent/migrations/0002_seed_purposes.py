from django.db import migrations

PURPOSES = [
    ("email_marketing", "Рекламные email-рассылки", "email", False),
    ("sms_marketing", "Рекламные SMS", "sms", False),
    ("push_marketing", "Рекламные push-уведомления", "push", False),
    ("messenger_marketing", "Рекламные сообщения в мессенджерах", "messenger", False),
    (
        "ad_audiences",
        "Передача хешированных контактов рекламным платформам (Яндекс, VK, myTarget) "
        "для показа рекламы",
        "",
        False,
    ),
    ("analytics_cookies", "Аналитические cookie", "", True),
    ("ad_cookies", "Рекламные cookie", "", True),
    ("profiling", "Профилирование (скоринг, сегменты, персонализация)", "", False),
]


def seed(apps, schema_editor):
    ConsentPurpose = apps.get_model("consent", "ConsentPurpose")
    for position, (code, name, channel, is_cookie) in enumerate(PURPOSES, start=1):
        ConsentPurpose.objects.update_or_create(
            code=code,
            defaults={"name": name, "channel": channel, "is_cookie": is_cookie, "position": position},
        )


def unseed(apps, schema_editor):
    apps.get_model("consent", "ConsentPurpose").objects.filter(
        code__in=[p[0] for p in PURPOSES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
