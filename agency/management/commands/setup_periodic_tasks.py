"""Write the platform's periodic tasks (``settings.PERIODIC_TASKS``, declared in
config/schedules.py) into django-celery-beat."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from agency.commands import BaseCommand

CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


def schedule_for(spec: dict) -> dict[str, Any]:
    """The django-celery-beat schedule of one entry, as PeriodicTask keyword arguments."""
    if "every_seconds" in spec and "crontab" not in spec:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=spec["every_seconds"], period=IntervalSchedule.SECONDS
        )
        return {"interval": interval}
    if "crontab" in spec and "every_seconds" not in spec:
        fields = {name: str(spec["crontab"].get(name, "*")) for name in CRONTAB_FIELDS}
        unknown = set(spec["crontab"]) - set(CRONTAB_FIELDS)
        if unknown:
            raise CommandError(f"{spec['name']}: unknown crontab fields {sorted(unknown)}")
        crontab, _ = CrontabSchedule.objects.get_or_create(
            **fields, timezone=spec.get("timezone", settings.TIME_ZONE)
        )
        return {"crontab": crontab}
    raise CommandError(f"{spec['name']}: give exactly one of every_seconds or crontab")


def _on_former_default(task: PeriodicTask, spec: dict) -> bool:
    """The entry still runs on a former default interval of the spec (never edited since)."""
    interval = task.interval
    return (
        interval is not None
        and interval.period == IntervalSchedule.SECONDS
        and interval.every in spec.get("was_every_seconds", ())
    )


class Command(BaseCommand):
    help = gettext_lazy(
        "Создаёт или обновляет периодические задачи платформы в django-celery-beat "
        "(config/schedules.py). Расписания, изменённые в админке, сохраняются."
    )

    def handle(self, *args, **options):
        for spec in settings.PERIODIC_TASKS:
            existing = PeriodicTask.objects.filter(name=spec["name"]).first()
            if existing is None:
                PeriodicTask.objects.create(
                    name=spec["name"], task=spec["task"], **schedule_for(spec)
                )
            else:
                changed = []
                if existing.task != spec["task"]:
                    existing.task = spec["task"]
                    changed.append("task")
                if _on_former_default(existing, spec):
                    existing.interval = schedule_for(spec)["interval"]
                    changed.append("interval")
                if changed:
                    existing.save(update_fields=changed)
            self.stdout.write(
                (_("есть: %(name)s → %(task)s") if existing else _("создана: %(name)s → %(task)s"))
                % {"name": spec["name"], "task": spec["task"]}
            )
