"""Trigger chains and what they send: chains and their steps, message templates, enrolments with
their holdout arm, the outbox, per-client channel settings, caps and quiet hours, push devices and
per-channel stops.

The rules live in the services (``campaigns.authoring`` for what staff and clients write,
``campaigns.engine`` for what runs on beat); these models hold state and the constraints that make
the worst mistakes impossible: one active enrolment per (chain, customer), one message per
(enrolment, step).
"""

from __future__ import annotations

import datetime as dt

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from agency.tenancy import TenantModel


class Channel(models.TextChoices):
    EMAIL = "email", _("email")
    SMS = "sms", _("SMS")
    PUSH = "push", _("push")


class Provider(models.TextChoices):
    SMTP = "smtp", _("SMTP (почтовый сервер платформы)")
    UNISENDER = "unisender", "UniSender"
    SENDSAY = "sendsay", "Sendsay"
    SMSRU = "smsru", "SMS.ru"
    SMSC = "smsc", "SMSC.ru"
    RUSTORE = "rustore", _("RuStore push")
    WEBPUSH = "webpush", _("Web push (VAPID)")


# Which providers serve which channel.
CHANNEL_PROVIDERS = {
    Channel.EMAIL: (Provider.SMTP, Provider.UNISENDER, Provider.SENDSAY),
    Channel.SMS: (Provider.SMSRU, Provider.SMSC),
    Channel.PUSH: (Provider.RUSTORE, Provider.WEBPUSH),
}


class CampaignSettings(TenantModel):
    """A client's frequency caps and quiet hours, across all its chains.

    Caps count marketing messages sent to one person (transactional chains are never counted);
    ``None`` means no cap. Quiet hours are in the recipient's time zone (the customer's
    ``attributes["time_zone"]``, an IANA name) or else the client's: a message due inside them
    waits for their end."""

    max_per_day = models.PositiveSmallIntegerField(
        _("сообщений в день на человека, всего"), null=True, blank=True, default=2
    )
    max_per_week = models.PositiveSmallIntegerField(
        _("сообщений в неделю на человека, всего"), null=True, blank=True, default=6
    )
    email_per_day = models.PositiveSmallIntegerField(
        _("писем в день"), null=True, blank=True, default=1
    )
    email_per_week = models.PositiveSmallIntegerField(
        _("писем в неделю"), null=True, blank=True, default=4
    )
    sms_per_day = models.PositiveSmallIntegerField(
        _("SMS в день"), null=True, blank=True, default=1
    )
    sms_per_week = models.PositiveSmallIntegerField(
        _("SMS в неделю"), null=True, blank=True, default=2
    )
    push_per_day = models.PositiveSmallIntegerField(
        _("push в день"), null=True, blank=True, default=2
    )
    push_per_week = models.PositiveSmallIntegerField(
        _("push в неделю"), null=True, blank=True, default=5
    )
    quiet_start = models.TimeField(_("тихие часы с"), default=dt.time(21, 0))
    quiet_end = models.TimeField(_("тихие часы до"), default=dt.time(9, 0))

    class Meta:
        verbose_name = _("настройки рассылок")
        verbose_name_plural = _("настройки рассылок")
        constraints = [
            models.UniqueConstraint(fields=["client"], name="campaignsettings_client_unique")
        ]

    def __str__(self) -> str:
        return str(_("Лимиты и тихие часы"))

    def cap(self, channel: str, period: str) -> int | None:
        """The cap for a channel ("email", "sms", "push" or "total") and period ("day"/"week")."""
        if channel == "total":
            return self.max_per_day if period == "day" else self.max_per_week
        return getattr(self, f"{channel}_per_{period}")


class ChannelSettings(TenantModel):
    """How a client sends over one channel: the provider, the sender, the credentials
    (encrypted like the ad cabinets') and the data recipient (the provider, with its country,
    for the cross-border guard). A client without email settings sends through the platform's
    SMTP server (``EMAIL_URL``)."""

    channel = models.CharField(_("канал"), max_length=10, choices=Channel.choices)
    provider = models.CharField(_("провайдер"), max_length=20, choices=Provider.choices)
    sender = models.CharField(
        _("отправитель"),
        max_length=200,
        blank=True,
        help_text=_("Адрес отправителя письма или согласованное имя отправителя SMS."),
    )
    sender_name = models.CharField(_("имя отправителя"), max_length=200, blank=True)
    credentials_encrypted = models.TextField(
        _("учётные данные (зашифрованы)"), blank=True, editable=False
    )
    recipient = models.ForeignKey(
        "consent.DataRecipient",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("получатель персональных данных"),
        editable=False,
    )
    is_active = models.BooleanField(_("включён"), default=True)
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)

    class Meta:
        verbose_name = _("канал рассылок")
        verbose_name_plural = _("каналы рассылок")
        constraints = [
            models.UniqueConstraint(fields=["client", "channel"], name="channelsettings_client")
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.get_provider_display()}"


class MessageTemplate(TenantModel):
    """What a step sends. Rendered in a sandbox (``campaigns.templating``) with a whitelisted
    context: first name, recommendations, offer code, unsubscribe link, tracked links."""

    name = models.CharField(_("название"), max_length=200)
    channel = models.CharField(_("канал"), max_length=10, choices=Channel.choices)
    subject = models.CharField(
        _("тема / заголовок"),
        max_length=300,
        blank=True,
        help_text=_("Тема письма или заголовок push; для SMS не нужна."),
    )
    body = models.TextField(_("текст"))
    offer_code = models.CharField(_("промокод"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    updated_at = models.DateTimeField(_("изменён"), auto_now=True)

    class Meta:
        verbose_name = _("шаблон сообщения")
        verbose_name_plural = _("шаблоны сообщений")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="messagetemplate_client_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_channel_display()})"


class TriggerChain(TenantModel):
    class Status(models.TextChoices):
        DRAFT = "draft", _("черновик")
        ACTIVE = "active", _("активна")
        PAUSED = "paused", _("на паузе")
        ARCHIVED = "archived", _("в архиве")

    class Trigger(models.TextChoices):
        REGISTRATION = "registration", _("регистрация")
        FIRST_PURCHASE = "first_purchase", _("первая покупка")
        DAYS_SINCE_PURCHASE = "days_since_purchase", _("N дней без покупки")
        LIFECYCLE_STAGE = "lifecycle_stage", _("стадия жизненного цикла")
        CHURN_PROBABILITY = "churn_probability", _("вероятность оттока не ниже порога")
        SEGMENT_ENTERED = "segment_entered", _("вход в сегмент")
        EVENT = "event", _("событие")

    class Reentry(models.TextChoices):
        NEVER = "never", _("никогда")
        AFTER_DAYS = "after_days", _("через N дней после входа")

    class Goal(models.TextChoices):
        PURCHASE = "purchase", _("покупка")
        EVENT = "event", _("событие")

    class Kind(models.TextChoices):
        MARKETING = "marketing", _("маркетинговая")
        TRANSACTIONAL = "transactional", _("транзакционная (не считается в лимитах)")

    name = models.CharField(_("название"), max_length=200)
    description = models.TextField(_("описание"), blank=True)
    status = models.CharField(
        _("статус"), max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    kind = models.CharField(_("вид"), max_length=15, choices=Kind.choices, default=Kind.MARKETING)
    preset = models.CharField(_("из шаблона"), max_length=40, blank=True, editable=False)

    trigger = models.CharField(_("триггер"), max_length=30, choices=Trigger.choices)
    trigger_event_type = models.CharField(
        _("тип события"), max_length=50, blank=True, help_text=_("Для триггера «событие».")
    )
    trigger_days = models.PositiveSmallIntegerField(
        _("дней без покупки"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    trigger_lifecycle_stage = models.CharField(_("стадия"), max_length=20, blank=True)
    trigger_churn_probability = models.FloatField(
        _("порог вероятности оттока"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
    )
    trigger_segment = models.ForeignKey(
        "segments.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("сегмент-триггер"),
    )
    audience_segment = models.ForeignKey(
        "segments.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("только для сегмента"),
        help_text=_("Необязательный фильтр: входят только участники этого сегмента."),
    )
    exit_on_segment_leave = models.BooleanField(
        _("выход при выходе из сегмента-фильтра"),
        default=False,
        help_text=_(
            "Выключено: пересчёт сегмента не снимает уже вошедших с цепочки (по умолчанию)."
        ),
    )
    reentry = models.CharField(
        _("повторный вход"), max_length=12, choices=Reentry.choices, default=Reentry.NEVER
    )
    reentry_days = models.PositiveSmallIntegerField(_("через дней"), null=True, blank=True)
    holdout_percent = models.PositiveSmallIntegerField(
        _("контрольная группа, %"),
        default=10,
        validators=[MinValueValidator(0), MaxValueValidator(50)],
    )
    conversion_window_days = models.PositiveSmallIntegerField(
        _("окно конверсии, дней"), default=30, validators=[MinValueValidator(1)]
    )
    goal = models.CharField(_("цель"), max_length=10, choices=Goal.choices, default=Goal.PURCHASE)
    goal_event_type = models.CharField(_("событие-цель"), max_length=50, blank=True)
    priority = models.PositiveSmallIntegerField(
        _("приоритет"),
        default=100,
        help_text=_(
            "Меньше — важнее: человек в активной цепочке с более высоким приоритетом не входит "
            "в менее важные, а при лимитах её сообщения уходят первыми."
        ),
    )
    excluded_audiences = models.ManyToManyField(
        "audiences.Audience",
        blank=True,
        related_name="+",
        verbose_name=_("исключать участников из аудиторий"),
        help_text=_(
            "Пока человек в этой цепочке, выбранные рекламные аудитории его не выгружают: "
            "не платить за рекламу тем, кого возвращают письмами."
        ),
    )
    activated_at = models.DateTimeField(_("запущена"), null=True, blank=True, editable=False)
    last_tick_at = models.DateTimeField(_("последний такт"), null=True, blank=True, editable=False)
    srm_p_value = models.FloatField(
        _("p-значение проверки долей групп"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("создана"), auto_now_add=True)
    updated_at = models.DateTimeField(_("изменена"), auto_now=True)

    class Meta:
        verbose_name = _("триггерная цепочка")
        verbose_name_plural = _("триггерные цепочки")
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="triggerchain_client_name")
        ]
        indexes = [models.Index(fields=["client", "status"], name="triggerchain_client_status")]

    def __str__(self) -> str:
        return self.name


class ChainStep(models.Model):
    class DelayFrom(models.TextChoices):
        ENROLMENT = "enrolment", _("после входа в цепочку")
        PREVIOUS = "previous", _("после предыдущего шага")

    class Condition(models.TextChoices):
        ALWAYS = "always", _("всегда")
        PREVIOUS_NOT_OPENED = "previous_not_opened", _("предыдущее не открыто")
        PREVIOUS_NOT_CLICKED = "previous_not_clicked", _("по предыдущему не кликнули")
        NO_PURCHASE = "no_purchase", _("нет покупки с момента входа")

    chain = models.ForeignKey(
        TriggerChain, on_delete=models.CASCADE, related_name="steps", verbose_name=_("цепочка")
    )
    position = models.PositiveSmallIntegerField(_("порядок"))
    delay_hours = models.PositiveIntegerField(_("задержка, часов"), default=0)
    delay_from = models.CharField(
        _("отсчёт задержки"), max_length=10, choices=DelayFrom.choices, default=DelayFrom.PREVIOUS
    )
    channel = models.CharField(_("канал"), max_length=10, choices=Channel.choices)
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.PROTECT, related_name="+", verbose_name=_("шаблон")
    )
    condition = models.CharField(
        _("условие"), max_length=25, choices=Condition.choices, default=Condition.ALWAYS
    )

    class Meta:
        verbose_name = _("шаг цепочки")
        verbose_name_plural = _("шаги цепочки")
        ordering = ["chain", "position"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "position"], name="chainstep_chain_position")
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.get_channel_display()} · {self.template.name}"


class Enrollment(TenantModel):
    """One stay of a customer in a chain, in one arm for good (a stable hash of client, chain
    and customer)."""

    class Arm(models.TextChoices):
        TREATMENT = "treatment", _("основная группа")
        HOLDOUT = "holdout", _("контрольная группа")

    class State(models.TextChoices):
        ACTIVE = "active", _("в цепочке")
        COMPLETED = "completed", _("прошёл все шаги")
        CONVERTED = "converted", _("достиг цели")
        EXITED = "exited", _("вышел")

    chain = models.ForeignKey(
        TriggerChain,
        on_delete=models.CASCADE,
        related_name="enrollments",
        verbose_name=_("цепочка"),
        db_index=False,
    )
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
        db_constraint=False,
    )
    arm = models.CharField(_("группа"), max_length=10, choices=Arm.choices)
    state = models.CharField(
        _("состояние"), max_length=10, choices=State.choices, default=State.ACTIVE
    )
    exit_reason = models.CharField(_("причина выхода"), max_length=200, blank=True)
    enrolled_at = models.DateTimeField(_("вошёл"), default=timezone.now)
    next_position = models.PositiveSmallIntegerField(_("следующий шаг"), null=True, blank=True)
    next_due_at = models.DateTimeField(_("следующий шаг в"), null=True, blank=True)
    last_step_at = models.DateTimeField(_("предыдущий шаг"), null=True, blank=True)
    ended_at = models.DateTimeField(_("завершено"), null=True, blank=True)
    converted_at = models.DateTimeField(_("цель достигнута"), null=True, blank=True)
    conversion_value = models.DecimalField(
        _("сумма конверсии, ₽"), max_digits=14, decimal_places=2, null=True, blank=True
    )

    class Meta:
        verbose_name = _("участие в цепочке")
        verbose_name_plural = _("участие в цепочках")
        constraints = [
            models.UniqueConstraint(
                fields=["chain", "customer"],
                condition=models.Q(state="active"),
                name="enrollment_one_active",
            )
        ]
        indexes = [
            models.Index(fields=["client", "chain", "customer"], name="enrollment_client_chain"),
            models.Index(fields=["client", "customer"], name="enrollment_client_customer"),
            models.Index(
                fields=["client", "next_due_at"],
                condition=models.Q(state="active"),
                name="enrollment_client_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}:{self.customer_id} ({self.arm})"


class Message(TenantModel):
    """The outbox: one row per (enrolment, step), whatever happens to it. A holdout person's row
    records what they would have been sent (state ``holdout``) and nothing leaves."""

    class State(models.TextChoices):
        QUEUED = "queued", _("в очереди")
        DEFERRED = "deferred", _("отложено")
        HOLDOUT = "holdout", _("контрольная группа (не отправляется)")
        SUPPRESSED = "suppressed", _("не отправлено")
        SENDING = "sending", _("отправляется")
        SENT = "sent", _("отправлено")
        DELIVERED = "delivered", _("доставлено")
        OPENED = "opened", _("открыто")
        CLICKED = "clicked", _("клик")
        FAILED = "failed", _("ошибка")
        CANCELLED = "cancelled", _("отменено")

    enrollment = models.ForeignKey(
        Enrollment,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("участие"),
        db_index=False,
    )
    step = models.ForeignKey(
        ChainStep,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("шаг"),
        db_index=False,
    )
    chain = models.ForeignKey(
        TriggerChain,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("цепочка"),
        db_index=False,
    )
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
        db_constraint=False,
    )
    channel = models.CharField(_("канал"), max_length=10, choices=Channel.choices)
    arm = models.CharField(_("группа"), max_length=10, choices=Enrollment.Arm.choices)
    transactional = models.BooleanField(_("транзакционное"), default=False)
    priority = models.PositiveSmallIntegerField(_("приоритет"), default=100)
    address = models.CharField(_("адрес"), max_length=2000, blank=True)
    subject = models.CharField(_("тема"), max_length=300, blank=True)
    body = models.TextField(_("текст"), blank=True)
    state = models.CharField(
        _("состояние"), max_length=10, choices=State.choices, default=State.QUEUED
    )
    reason = models.CharField(_("причина"), max_length=500, blank=True)
    provider = models.CharField(_("провайдер"), max_length=20, blank=True)
    provider_message_id = models.CharField(_("id у провайдера"), max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(_("попыток"), default=0)
    outcome_unknown = models.BooleanField(
        _("исход неизвестен"),
        default=False,
        help_text=_(
            "Провайдер мог принять сообщение, но ответ не дошёл: повторно не отправляется."
        ),
    )
    due_at = models.DateTimeField(_("отправить не раньше"), default=timezone.now)
    created_at = models.DateTimeField(_("создано"), default=timezone.now)
    sending_at = models.DateTimeField(_("отправка начата"), null=True, blank=True)
    sent_at = models.DateTimeField(_("отправлено"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("доставлено"), null=True, blank=True)
    opened_at = models.DateTimeField(_("открыто"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("клик"), null=True, blank=True)
    finished_at = models.DateTimeField(_("завершено"), null=True, blank=True)

    class Meta:
        verbose_name = _("сообщение")
        verbose_name_plural = _("сообщения (исходящие)")
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="message_once_per_step")
        ]
        indexes = [
            # The dispatcher's claim: a client's due messages of one channel, most important
            # chain first (ORDER BY priority, due_at, id), read in index order.
            models.Index(
                fields=["client", "channel", "priority", "due_at", "id"],
                condition=models.Q(state__in=["queued", "deferred"]),
                name="message_client_due",
            ),
            models.Index(fields=["client", "customer", "created_at"], name="message_client_cust"),
            models.Index(fields=["client", "chain", "state"], name="message_client_chain"),
            models.Index(
                fields=["client", "customer", "sending_at"],
                condition=models.Q(sending_at__isnull=False),
                name="message_client_sent",
            ),
            models.Index(
                fields=["client", "state", "sending_at"],
                condition=models.Q(state="sending"),
                name="message_client_sending",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_channel_display()} → {self.customer_id} ({self.state})"


class PushDevice(TenantModel):
    """A customer's push address: a RuStore token or a web push subscription (JSON)."""

    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
        db_constraint=False,
    )
    provider = models.CharField(
        _("провайдер"),
        max_length=20,
        choices=[(Provider.RUSTORE, Provider.RUSTORE.label), (Provider.WEBPUSH, "Web push")],
    )
    token = models.TextField(_("токен / подписка"))
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("добавлено"), default=timezone.now)
    gone_at = models.DateTimeField(_("недействительно с"), null=True, blank=True)

    class Meta:
        verbose_name = _("push-устройство")
        verbose_name_plural = _("push-устройства")
        constraints = [
            models.UniqueConstraint(fields=["client", "token_hash"], name="pushdevice_token")
        ]
        indexes = [models.Index(fields=["client", "customer"], name="pushdevice_client_customer")]


class ChannelStop(TenantModel):
    """A person stopped on one channel by what the channel told us: a hard bounce, a complaint,
    a dead push token. Unsubscribes are consent withdrawals (the ledger), not stops."""

    class Reason(models.TextChoices):
        BOUNCE = "bounce", _("адрес не существует (bounce)")
        COMPLAINT = "complaint", _("жалоба на спам")
        INVALID = "invalid", _("адрес недействителен")

    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
        db_constraint=False,
    )
    channel = models.CharField(_("канал"), max_length=10, choices=Channel.choices)
    reason = models.CharField(_("причина"), max_length=10, choices=Reason.choices)
    detail = models.CharField(_("подробности"), max_length=500, blank=True)
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("сообщение"),
        db_constraint=False,
    )
    created_at = models.DateTimeField(_("с"), default=timezone.now)

    class Meta:
        verbose_name = _("остановка канала")
        verbose_name_plural = _("остановки каналов")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "customer", "channel"], name="channelstop_once"
            )
        ]


class TrackedLink(TenantModel):
    """A link of a client's SMS, kept once, so the SMS carries a short signed redirect
    (``/t/s/…``, some 60 characters) instead of the whole address: every character of an SMS
    counts."""

    url = models.TextField(_("адрес"))
    url_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("создана"), default=timezone.now)

    class Meta:
        verbose_name = _("отслеживаемая ссылка")
        verbose_name_plural = _("отслеживаемые ссылки")
        constraints = [
            models.UniqueConstraint(fields=["client", "url_hash"], name="trackedlink_client_url")
        ]

    def __str__(self) -> str:
        return self.url
