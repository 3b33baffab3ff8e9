"""152-FZ: consent purposes and texts, the append-only consent ledger, subject requests,
recipients of personal data and cross-border notices, incidents."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from agency.append_only import AppendOnlyModelMixin, AppendOnlyQuerySetMixin
from agency.i18n import client_localtime
from agency.tenancy import TenantModel, TenantQuerySet


class ConsentPurpose(models.Model):
    """What a consent is for; the same list for every client (seeded by a data migration)."""

    code = models.SlugField(_("код"), max_length=40, unique=True)
    name = models.CharField(_("название"), max_length=200)
    description = models.TextField(_("описание"), blank=True)
    channel = models.CharField(
        _("канал"),
        max_length=20,
        blank=True,
        help_text=_("Канал сообщений, который закрывает отписка: email, sms, push, messenger."),
    )
    is_cookie = models.BooleanField(_("категория cookie"), default=False)
    position = models.PositiveSmallIntegerField(_("порядок"), default=0)

    class Meta:
        verbose_name = _("цель обработки")
        verbose_name_plural = _("цели обработки")
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class ConsentText(TenantModel):
    """A versioned consent text of one client for one purpose; immutable once published."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("черновик")
        PUBLISHED = "published", _("опубликован")

    purpose = models.ForeignKey(
        ConsentPurpose, on_delete=models.PROTECT, related_name="texts", verbose_name=_("цель")
    )
    version = models.PositiveIntegerField(_("версия"), editable=False)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.DRAFT, editable=False
    )
    title = models.CharField(_("заголовок"), max_length=300)
    operator_name = models.CharField(_("оператор: наименование"), max_length=300, blank=True)
    operator_address = models.CharField(_("оператор: адрес"), max_length=500, blank=True)
    purpose_text = models.TextField(_("цель обработки"), blank=True)
    data_list = models.TextField(_("перечень данных"), blank=True)
    processors = models.TextField(
        _("кому поручена обработка / передаются данные"),
        blank=True,
        help_text=_("Агентство; для ad_audiences — рекламные платформы (Яндекс, VK, myTarget)."),
    )
    actions = models.TextField(_("действия и способы обработки"), blank=True)
    term = models.CharField(_("срок действия согласия"), max_length=300, blank=True)
    withdrawal = models.TextField(_("как отозвать"), blank=True)
    body = models.TextField(
        _("полный текст"), blank=True, help_text=_("Показывается субъекту; части выше обязательны.")
    )
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    published_at = models.DateTimeField(_("опубликован"), null=True, blank=True, editable=False)

    REQUIRED_PARTS = (
        "operator_name",
        "operator_address",
        "purpose_text",
        "data_list",
        "processors",
        "actions",
        "term",
        "withdrawal",
    )

    class Meta:
        verbose_name = _("текст согласия")
        verbose_name_plural = _("тексты согласий")
        ordering = ["purpose__position", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "purpose", "version"], name="consenttext_client_purpose_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose.code} v{self.version}"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED

    def save(self, *args, **kwargs):
        if self.pk is not None and (
            ConsentText.objects.unscoped().filter(pk=self.pk, status=self.Status.PUBLISHED).exists()
        ):
            raise PermissionError("a published consent text is immutable: create a new version")
        super().save(*args, **kwargs)


class ConsentSubjectLink(TenantModel):
    """An anonymous cookie subject later recognised as a customer (append-only)."""

    subject_id = models.CharField(_("id cookie-субъекта"), max_length=64)
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
    )
    linked_at = models.DateTimeField(_("связан"), default=timezone.now)
    source = models.CharField(_("источник"), max_length=30, blank=True)

    class Meta:
        verbose_name = _("связь cookie-субъекта с покупателем")
        verbose_name_plural = _("связи cookie-субъектов с покупателями")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "subject_id", "customer"], name="subjectlink_unique"
            )
        ]
        indexes = [models.Index(fields=["client", "customer"], name="subjectlink_client_customer")]


class ConsentRecordQuerySet(AppendOnlyQuerySetMixin, TenantQuerySet):
    pass


class ConsentRecord(AppendOnlyModelMixin, TenantModel):
    """One line of the append-only consent ledger: a grant, a withdrawal, or an erasure note.

    Each record carries a SHA-256 over its content and the previous record's hash for the same
    client, so any edit breaks the chain (``verify_consent_log``). Only the erasure service may
    blank the personal fields (IP, user agent, identifiers); the hash stays as it was.
    """

    class Action(models.TextChoices):
        GRANTED = "granted", _("дано")
        WITHDRAWN = "withdrawn", _("отозвано")
        ERASURE = "erasure", _("запись об удалении данных")

    class Source(models.TextChoices):
        WEB_FORM = "web_form", _("веб-форма")
        COOKIE_BANNER = "cookie_banner", _("cookie-баннер")
        API = "api", "API"
        CRM_IMPORT = "crm_import", _("импорт из CRM")
        UNSUBSCRIBE_LINK = "unsubscribe_link", _("ссылка отписки")
        PORTAL = "portal", _("портал")
        SUBJECT_REQUEST = "subject_request", _("запрос субъекта")
        ADMIN = "admin", _("админка")

    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("покупатель"),
        db_index=False,
    )
    subject_id = models.CharField(_("id cookie-субъекта"), max_length=64, blank=True)
    purpose = models.ForeignKey(
        ConsentPurpose,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("цель"),
    )
    text = models.ForeignKey(
        ConsentText,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("версия текста"),
    )
    action = models.CharField(_("действие"), max_length=20, choices=Action.choices)
    at = models.DateTimeField(_("время"))
    source = models.CharField(_("источник"), max_length=30, choices=Source.choices)
    ip = models.GenericIPAddressField("IP", null=True, blank=True)
    user_agent = models.CharField("User-Agent", max_length=500, blank=True)
    url = models.CharField(_("страница"), max_length=1000, blank=True)
    form_id = models.CharField(_("форма"), max_length=200, blank=True)
    details = models.JSONField(_("подробности"), default=dict, blank=True)
    prev_hash = models.CharField(_("хеш предыдущей записи"), max_length=64, blank=True)
    hash = models.CharField(_("хеш записи"), max_length=64)
    erased_at = models.DateTimeField(_("персональные поля удалены"), null=True, blank=True)
    recorded_at = models.DateTimeField(_("записано"), default=timezone.now)

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("запись журнала согласий")
        verbose_name_plural = _("журнал согласий")
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["client", "customer", "purpose", "at"], name="consent_client_customer"
            ),
            models.Index(
                fields=["client", "subject_id", "purpose", "at"], name="consent_client_subject"
            ),
            models.Index(fields=["client", "id"], name="consent_client_chain"),
        ]

    def __str__(self) -> str:
        who = self.customer_id or self.subject_id or "—"
        code = self.purpose.code if self.purpose_id else ""
        return f"#{self.pk} {self.get_action_display()} {code} ({who})"


def _new_site_key() -> str:
    return secrets.token_urlsafe(16)


class ConsentSite(TenantModel):
    """A client's website that shows the cookie banner; its key is public, its origins checked."""

    name = models.CharField(_("сайт"), max_length=200)
    site_key = models.CharField(_("ключ сайта"), max_length=40, unique=True, default=_new_site_key)
    allowed_origins = models.JSONField(
        _("разрешённые origin"),
        default=list,
        help_text=_('Напр. ["https://shop.example.ru"]: откуда баннер может записывать выбор.'),
    )
    is_active = models.BooleanField(_("активен"), default=True)

    class Meta:
        verbose_name = _("сайт с cookie-баннером")
        verbose_name_plural = _("сайты с cookie-баннером")

    def __str__(self) -> str:
        return self.name


class DataSubjectRequest(TenantModel):
    """A person's request under 152-FZ, with a due date in Russian working days."""

    class Kind(models.TextChoices):
        ACCESS = "access", _("доступ к данным")
        RECTIFICATION = "rectification", _("уточнение")
        ERASURE = "erasure", _("удаление")
        WITHDRAWAL = "withdrawal", _("отзыв согласия")
        STOP_PROCESSING = "stop_processing", _("прекращение обработки")

    class Status(models.TextChoices):
        RECEIVED = "received", _("получен")
        IN_PROGRESS = "in_progress", _("в работе")
        COMPLETED = "completed", _("исполнен")
        REJECTED = "rejected", _("отказано (с обоснованием)")

    kind = models.CharField(_("вид"), max_length=20, choices=Kind.choices)
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("субъект (покупатель)"),
        db_index=False,
    )
    subject_contact = models.CharField(
        _("контакт субъекта"), max_length=300, blank=True, help_text=_("Как ответить субъекту.")
    )
    details = models.TextField(_("содержание запроса"), blank=True)
    received_at = models.DateTimeField(_("получен"), default=timezone.now)
    due_date = models.DateField(_("срок исполнения"), editable=False)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.RECEIVED
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("исполнитель"),
    )
    completed_at = models.DateTimeField(_("исполнен"), null=True, blank=True)
    resolution = models.TextField(_("результат / обоснование"), blank=True)
    archive = models.FileField(_("архив для субъекта"), upload_to="dsr/", blank=True)

    class Meta:
        verbose_name = _("запрос субъекта ПДн")
        verbose_name_plural = _("запросы субъектов ПДн")
        ordering = ["due_date", "received_at"]
        indexes = [models.Index(fields=["client", "status", "due_date"], name="dsr_client_due")]

    def __str__(self) -> str:
        return _("%(kind)s · до %(date)s") % {
            "kind": self.get_kind_display(),
            "date": f"{self.due_date:%d.%m.%Y}",
        }

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.RECEIVED, self.Status.IN_PROGRESS)

    @property
    def is_overdue(self) -> bool:
        return self.is_open and timezone.localdate() > self.due_date


COUNTRY_CODE = RegexValidator(r"^[A-Z]{2}$", _("Двухбуквенный код страны, напр. RU."))


class DataRecipient(TenantModel):
    """Whoever receives a client's personal data from the platform: an ad platform, an SMS,
    push or email provider. Its country decides whether a transfer is cross-border."""

    class Kind(models.TextChoices):
        AD_PLATFORM = "ad_platform", _("рекламная платформа")
        SMS = "sms", _("SMS-провайдер")
        PUSH = "push", _("push-провайдер")
        EMAIL = "email", _("email-провайдер")
        OTHER = "other", _("другое")

    name = models.CharField(_("получатель"), max_length=200)
    legal_name = models.CharField(_("юридическое лицо"), max_length=300, blank=True)
    kind = models.CharField(_("вид"), max_length=20, choices=Kind.choices)
    country = models.CharField(
        _("страна (ISO 3166-1)"), max_length=2, default="RU", validators=[COUNTRY_CODE]
    )

    class Meta:
        verbose_name = _("получатель персональных данных")
        verbose_name_plural = _("получатели персональных данных")

    def __str__(self) -> str:
        return f"{self.name} ({self.country})"


class CrossBorderTransferNotice(TenantModel):
    """The operator's notice to Roskomnadzor of a cross-border transfer (152-FZ art. 12)."""

    country = models.CharField(_("страна (ISO 3166-1)"), max_length=2, validators=[COUNTRY_CODE])
    recipient = models.CharField(_("получатель"), max_length=300)
    notified_at = models.DateField(_("дата уведомления РКН"))
    reference = models.CharField(_("номер / ссылка"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("внесено"), auto_now_add=True)

    class Meta:
        verbose_name = _("уведомление о трансграничной передаче")
        verbose_name_plural = _("уведомления о трансграничной передаче")

    def __str__(self) -> str:
        return f"{self.country} · {self.recipient} · {self.notified_at:%d.%m.%Y}"


class TransferRefusal(TenantModel):
    """A refused export of personal data to a recipient abroad: logged and shown."""

    recipient = models.ForeignKey(
        DataRecipient, on_delete=models.PROTECT, related_name="+", verbose_name=_("получатель")
    )
    at = models.DateTimeField(_("время"), default=timezone.now)
    operation = models.CharField(_("операция"), max_length=200)
    reason = models.CharField(_("причина"), max_length=500)

    class Meta:
        verbose_name = _("отказ в трансграничной передаче")
        verbose_name_plural = _("отказы в трансграничной передаче")
        ordering = ["-at"]


class Incident(TenantModel):
    """A personal-data breach (152-FZ art. 21 part 3.1): notify in 24 h, report in 72 h."""

    class Status(models.TextChoices):
        OPEN = "open", _("открыт")
        NOTIFIED = "notified", _("РКН уведомлён (24 ч)")
        INVESTIGATED = "investigated", _("результаты направлены (72 ч)")
        CLOSED = "closed", _("закрыт")

    detected_at = models.DateTimeField(_("обнаружен"))
    description = models.TextField(_("что произошло"))
    affected_subjects = models.PositiveIntegerField(_("затронуто субъектов"), null=True, blank=True)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.OPEN
    )
    notified_at = models.DateTimeField(_("уведомление РКН направлено"), null=True, blank=True)
    investigation_reported_at = models.DateTimeField(
        _("результаты расследования направлены"), null=True, blank=True
    )
    created_at = models.DateTimeField(_("внесён"), auto_now_add=True)

    NOTIFY_WITHIN = timedelta(hours=24)
    INVESTIGATE_WITHIN = timedelta(hours=72)

    class Meta:
        verbose_name = _("инцидент с ПДн")
        verbose_name_plural = _("инциденты с ПДн")
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        when = client_localtime(self, self.detected_at)
        return _("Инцидент %(when)s") % {"when": f"{when:%d.%m.%Y %H:%M}"}

    @property
    def notify_deadline(self):
        return self.detected_at + self.NOTIFY_WITHIN

    @property
    def investigation_deadline(self):
        return self.detected_at + self.INVESTIGATE_WITHIN

    @property
    def notification_overdue(self) -> bool:
        done = self.notified_at or timezone.now()
        return done > self.notify_deadline

    @property
    def investigation_overdue(self) -> bool:
        done = self.investigation_reported_at or timezone.now()
        return done > self.investigation_deadline
