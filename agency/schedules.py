"""Every periodic task of the platform, declared here and nowhere else.

``python manage.py setup_periodic_tasks`` writes them into django-celery-beat (where staff can
pause them or change the interval in the admin); it is idempotent and keeps edited intervals.
"""

PERIODIC_TASKS: list[dict] = [
    {
        "name": "Повторная отправка зависших импортов CSV",
        "task": "clients.tasks.import_jobs_recover_task",
        "every_seconds": 300,
    },
]
