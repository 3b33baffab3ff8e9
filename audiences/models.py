"""Destinations (a client's ad cabinet), audiences (a segment synced to one), the membership
snapshots a sync uploads, and the log of sync runs.

Remote state is kept on the audience (``remote``: ids of the platform's objects) and the
snapshot the platform holds (``confirmed_snapshot``), so every sync diffs against what was
really uploaded, and an interrupted sync resumes from its own snapshot (see
``audiences.services``).
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from agency.jobs import BackgroundJob, job_status_field
from agency.tenancy import TenantModel


class Destination(TenantModel):
    """One ad cabinet of the client on one platform, with its credentials (encrypted).

    Where its platform is and which country it is in are the platform's, not the cabinet's: the
    address is deployment configuration (``<PROVIDER>_BASE_URL``, ``integrations``), so no
    client or staff input can point a worker at an address of its choosing (SSRF); the country
    of its data recipient is the platform operator's (:data:`PLATFORM_COUNTRY`).
    """

    class Platform(models.TextChoices):
        YANDEX_AUDIENCES = "yandex_audiences", _("Яндекс Аудитории")
        VK_ADS = "vk_ads", _("VK Реклама")
        MYTARGET = "mytarget", "myTarget"

    class Hashing(models.TextChoices):
        SHA256 = "sha256", "SHA-256"
        MD5 = "md5", "MD5"
        PLAIN = "plain", _("без хеширования")

    name = models.CharField(_("название"), max_length=200)
    platform = models.CharField(_("платформа"), max_length=20, choices=Platform.choices)
    hashing = models.CharField(
        _("хеширование"),
        max_length=10,
        choices=Hashing.choices,
        default=Hashing.SHA256,
        help_text=(
            _("Яндекс Аудитории: только SHA-256. VK Реклама и myTarget: MD5 или без хеширования.")
        ),
    )
    recipient = models.ForeignKey(
        "consent.DataRecipient",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("получатель персональных данных"),
        editable=False,
    )
    credentials_encrypted = models.TextField(_("учётные данные (зашифрованы)"), editable=False)
    # VK Ads / myTarget token cache: a client may hold at most 5 live tokens, so one is kept,
    # reused and refreshed (audiences.vk_tokens.VkTokenCache).
    token_encrypted = models.TextField(_("токен (зашифрован)"), blank=True, editable=False)
    token_expires_at = models.DateTimeField(_("токен действует до"), null=True, editable=False)
    # One sync at a time per destination: a lease taken by the running sync.
    busy_run_id = models.BigIntegerField(_("выполняется синхронизация"), null=True, editable=False)
    busy_until = models.DateTimeField(_("занято до"), null=True, editable=False)
    is_active = models.BooleanField(_("активно"), default=True)
    created_at = models.DateTimeField(_("создано"), auto_now_add=True)

    class Meta:
        verbose_name = _("рекламный кабинет")
        verbose_name_plural = _("рекламные кабинеты")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="destination_client_name")
        ]
        indexes = [models.Index(fields=["client", "platform"], name="destination_client_platform")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()})"

    @property
    def country(self) -> str:
        """ISO 3166-1 country of the platform operator: the data recipient's country."""
        return PLATFORM_COUNTRY[self.platform]


# Yandex Audiences is run by ООО «Яндекс», VK Ads and myTarget by ООО «ВК»: Russian companies,
# so an export to them is not a cross-border transfer (152-FZ art. 12).
PLATFORM_COUNTRY = {
    Destination.Platform.YANDEX_AUDIENCES: "RU",
    Destination.Platform.VK_ADS: "RU",
    Destination.Platform.MYTARGET: "RU",
}


HOLDOUT_MAX_PERCENT = 50


class Audience(TenantModel):
    """A segment kept in step with a remote audience on a schedule."""

    class HoldoutUnit(models.TextChoices):
        PERSON = "person", _("человек")
        REGION = "region", _("регион (гео-тест)")

    class Purpose(models.TextChoices):
        RETARGETING = "retargeting", _("ретаргетинг")
        LOOKALIKE = "lookalike", "look-alike"
        EXCLUSION = "exclusion", _("исключение")

    class Identifiers(models.TextChoices):
        EMAIL = "email", "email"
        PHONE = "phone", _("телефон")
        EMAIL_PHONE = "email_phone", _("email и телефон")

    class State(models.TextChoices):
        NEW = "new", _("ещё не синхронизирована")
        SYNCED = "synced", _("синхронизирована")
        PROCESSING = "processing", _("обрабатывается платформой")
        TOO_SMALL = "too_small", _("слишком мала")
        FAILED = "failed", _("ошибка")

    name = models.CharField(_("название"), max_length=200)
    segment = models.ForeignKey(
        "segments.Segment", on_delete=models.PROTECT, related_name="+", verbose_name=_("сегмент")
    )
    destination = models.ForeignKey(
        Destination,
        on_delete=models.PROTECT,
        related_name="audiences",
        verbose_name=_("рекламный кабинет"),
    )
    purpose = models.CharField(
        _("назначение"), max_length=20, choices=Purpose.choices, default=Purpose.RETARGETING
    )
    identifiers = models.CharField(
        _("идентификаторы"),
        max_length=20,
        choices=Identifiers.choices,
        default=Identifiers.EMAIL_PHONE,
    )
    lookalike_value = models.PositiveSmallIntegerField(
        _("точность look-alike (Яндекс)"),
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text=_("1 — шире охват, 5 — ближе к исходному сегменту."),
    )
    suppression_segments = models.ManyToManyField(
        "segments.Segment",
        blank=True,
        related_name="+",
        verbose_name=_("исключить участников сегментов"),
    )
    sync_every_days = models.PositiveSmallIntegerField(
        _("обновлять раз в, дней"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text=_("По предложению агентства — раз в 1–2 недели."),
    )
    direct_retargeting_condition_id = models.BigIntegerField(
        _("id условия ретаргетинга в Директе"),
        null=True,
        blank=True,
        help_text=_(
            "Условие ретаргетинга Яндекс Директа на этот сегмент: нужно для корректировок "
            "ставок (bidmodifiers.add)."
        ),
    )
    # A user-level holdout (a control group): people (or, Enterprise, whole regions) left out of
    # every upload by a stable hash (audiences.holdout), so the audience's uplift is measured as
    # a chain's (reports.audience_results). The share and unit are fixed while the test runs.
    holdout_percent = models.PositiveSmallIntegerField(
        _("контрольная группа, %"),
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(HOLDOUT_MAX_PERCENT)],
        help_text=_(
            "Доля людей (или регионов), которые не попадут в выгрузку, чтобы измерить прирост "
            "от рекламы. 0 — без контрольной группы. Пока тест идёт, долю не изменить: "
            "сначала остановите тест (0)."
        ),
    )
    holdout_unit = models.CharField(
        _("единица контрольной группы"),
        max_length=10,
        choices=HoldoutUnit.choices,
        default=HoldoutUnit.PERSON,
    )
    holdout_started_at = models.DateTimeField(
        _("контрольная группа с"), null=True, blank=True, editable=False
    )
    is_active = models.BooleanField(_("активна"), default=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        verbose_name=_("расписание"),
    )
    state = models.CharField(
        _("состояние"), max_length=20, choices=State.choices, default=State.NEW, editable=False
    )
    state_message = models.TextField(_("пояснение"), blank=True, editable=False)
    remote = models.JSONField(_("объекты на платформе"), default=dict, blank=True, editable=False)
    remote_status = models.CharField(
        _("статус на платформе"), max_length=40, blank=True, editable=False
    )
    matched_percent = models.FloatField(_("распознано, %"), null=True, blank=True, editable=False)
    confirmed_snapshot = models.ForeignKey(
        "AudienceSnapshot",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        verbose_name=_("загруженный снимок"),
    )
    last_synced_at = models.DateTimeField(_("последняя синхронизация"), null=True, editable=False)
    # A sync wanted before the schedule (audiences.services.audience_sync_want): the retry of a
    # deferred run, or the removal of people who withdrew; a beat task starts it when due, and
    # any new run of the audience satisfies it.
    sync_wanted_at = models.DateTimeField(
        _("внеплановая синхронизация"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Когда запустить синхронизацию вне расписания: повтор отложенной или после "
            "отзыва согласий."
        ),
    )
    sync_wanted_source = models.CharField(
        _("причина внеплановой синхронизации"), max_length=20, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("создана"), auto_now_add=True)

    class Meta:
        verbose_name = _("аудитория")
        verbose_name_plural = _("аудитории")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="audience_client_name")
        ]
        indexes = [models.Index(fields=["client", "destination"], name="audience_client_dest")]

    def __str__(self) -> str:
        return self.name

    def suppression_segment_ids(self) -> list[int]:
        """Read through the link table: the related manager would query segments unscoped
        (services check on save that they are the audience's client's)."""
        return list(
            Audience.suppression_segments.through.objects.filter(audience_id=self.pk)
            .order_by("segment_id")
            .values_list("segment_id", flat=True)
        )


class AudienceSnapshot(TenantModel):
    """The hashed identifiers one sync decided to upload, in :class:`AudienceSnapshotChunk`."""

    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="snapshots", verbose_name=_("аудитория")
    )
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    complete = models.BooleanField(_("собран полностью"), default=False)
    size = models.PositiveIntegerField(_("идентификаторов"), default=0)
    counts = models.JSONField(_("по видам"), default=dict, blank=True)

    class Meta:
        verbose_name = _("снимок аудитории")
        verbose_name_plural = _("снимки аудиторий")
        indexes = [models.Index(fields=["client", "audience"], name="snapshot_client_audience")]


class AudienceSnapshotChunk(models.Model):
    """A run of a snapshot's identifiers of one kind, as the platform receives them: distinct,
    sorted (code-point order, which is UTF-8 byte order) and joined by newlines, up to
    ``CHUNK_VALUES`` per row, numbered in order.

    Why chunks and not a row per identifier: a 1M-member snapshot is ~2M identifiers, and a
    row each (with its key and index entry) cost more to write than the rest of a sync
    together. Sorted chunks make a file a concatenation and a difference between two
    snapshots one streaming merge (``audiences.snapshots``)."""

    CHUNK_VALUES = 10_000

    class Kind(models.IntegerChoices):
        EMAIL = 1, "email"
        PHONE = 2, "phone"

    client_id = models.BigIntegerField()
    snapshot = models.ForeignKey(
        AudienceSnapshot, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    position = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    values = models.TextField()

    class Meta:
        verbose_name = _("часть снимка")
        verbose_name_plural = _("части снимков")
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "kind", "position"], name="snapshotchunk_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id}:{self.kind}:{self.position}"


class SyncRun(BackgroundJob, TenantModel):
    """One sync of an audience: who was held back and why, what was sent, what the platform
    said. Failed runs keep the platform's own error text."""

    class Status(models.TextChoices):
        PENDING = "pending", _("в очереди")
        RUNNING = "running", _("выполняется")
        SUCCEEDED = "succeeded", _("выполнена")
        DEFERRED = "deferred", _("отложена (платформа ещё обрабатывает)")
        SKIPPED = "skipped", _("пропущена")
        FAILED = "failed", _("ошибка")

    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="sync_runs", verbose_name=_("аудитория")
    )
    snapshot = models.ForeignKey(
        AudienceSnapshot,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("снимок"),
    )
    status = job_status_field(Status)
    source = models.CharField(_("источник"), max_length=20, default="beat")
    created_at = models.DateTimeField(_("создана"), auto_now_add=True)
    started_at = models.DateTimeField(_("начата"), null=True, blank=True)
    finished_at = models.DateTimeField(_("завершена"), null=True, blank=True)
    progress = models.PositiveSmallIntegerField(_("ход, %"), default=0)
    stage = models.CharField(_("этап"), max_length=100, blank=True)
    members = models.PositiveIntegerField(_("участников сегмента"), default=0)
    held_back_erased = models.PositiveIntegerField(_("удалены по запросу"), default=0)
    held_back_consent = models.PositiveIntegerField(_("нет согласия"), default=0)
    suppressed = models.PositiveIntegerField(_("исключены"), default=0)
    held_out = models.PositiveIntegerField(_("в контрольной группе"), default=0)
    no_identifier = models.PositiveIntegerField(_("нет email/телефона"), default=0)
    exported = models.PositiveIntegerField(_("выгружено людей"), default=0)
    uploaded = models.PositiveIntegerField(_("отправлено строк"), default=0)
    added = models.PositiveIntegerField(_("добавлено"), default=0)
    removed = models.PositiveIntegerField(_("удалено"), default=0)
    remote_status = models.CharField(_("статус на платформе"), max_length=40, blank=True)
    matched_percent = models.FloatField(_("распознано, %"), null=True, blank=True)
    request_ids = models.JSONField(_("id запросов"), default=list, blank=True)
    steps = models.JSONField(_("шаги"), default=list, blank=True)
    message = models.TextField(_("пояснение"), blank=True)
    platform_error = models.TextField(_("ошибка платформы"), blank=True)
    error = models.TextField(_("ошибка"), blank=True)

    recovery_reset = {"stage": gettext_noop("возобновление после сбоя")}

    class Meta:
        verbose_name = _("синхронизация")
        verbose_name_plural = _("синхронизации")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "audience", "created_at"], name="syncrun_client_aud"),
            models.Index(fields=["status", "created_at"], name="syncrun_status_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.audience_id} {self.status}"
