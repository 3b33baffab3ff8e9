"""Write the platform's periodic tasks (agency.schedules) into django-celery-beat."""

from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from agency.schedules import PERIODIC_TASKS


class Command(BaseCommand):
    help = (
        "Создаёт или обновляет периодические задачи платформы в django-celery-beat "
        "(agency/schedules.py). Интервалы, изменённые в админке, сохраняются."
    )

    def handle(self, *args, **options):
        for spec in PERIODIC_TASKS:
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=spec["every_seconds"], period=IntervalSchedule.SECONDS
            )
            task, created = PeriodicTask.objects.get_or_create(
                name=spec["name"], defaults={"task": spec["task"], "interval": interval}
            )
            if not created and task.task != spec["task"]:
                task.task = spec["task"]
                task.save(update_fields=["task"])
            self.stdout.write(
                f"{'создана' if created else 'есть'}: {spec['name']} → {spec['task']}"
            )
