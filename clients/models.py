"""The tenant (Client), its tier and people, and the client's customer base."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from agency.i18n import client_localtime
from agency.jobs import BackgroundJob, job_status_field
from agency.tenancy import TenantModel
from integrations.amocrm.formats import AMOCRM_PREFIX
from integrations.bitrix24.formats import BITRIX24_PREFIX

from .validators import validate_inn


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(gettext("Неизвестный часовой пояс: %(zone)s") % {"zone": value})


class Tier(models.Model):
    """A service tier from the agency's offer; its limits are data, enforced in services."""

    code = models.SlugField(_("код"), max_length=30, unique=True)
    name = models.CharField(_("название"), max_length=100)
    position = models.PositiveSmallIntegerField(_("порядок"), default=0)
    ad_spend_min = models.DecimalField(
        _("рекламный бюджет от, ₽/мес"), max_digits=14, decimal_places=2
    )
    ad_spend_max = models.DecimalField(
        _("рекламный бюджет до, ₽/мес"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    setup_fee_min = models.DecimalField(_("внедрение от, ₽"), max_digits=14, decimal_places=2)
    setup_fee_max = models.DecimalField(_("внедрение до, ₽"), max_digits=14, decimal_places=2)
    monthly_fee_min = models.DecimalField(_("абонплата от, ₽/мес"), max_digits=14, decimal_places=2)
    monthly_fee_max = models.DecimalField(_("абонплата до, ₽/мес"), max_digits=14, decimal_places=2)
    max_segments = models.PositiveIntegerField(
        _("максимум сегментов"), null=True, blank=True, help_text=_("Пусто — без ограничения.")
    )
    max_trigger_chains = models.PositiveIntegerField(
        _("максимум триггерных цепочек"),
        null=True,
        blank=True,
        help_text=_("Пусто — без ограничения."),
    )
    predictive = models.BooleanField(_("предиктивные сегменты (отток, CLV)"), default=False)
    omnichannel = models.BooleanField(_("омниканальные триггеры"), default=False)
    value_bidding = models.BooleanField(_("ставки по ценности клиента"), default=False)
    cohorts = models.BooleanField(_("когортный анализ"), default=False)
    incrementality = models.BooleanField(_("тесты инкрементальности"), default=False)
    programmatic = models.BooleanField(_("programmatic / DMP-экспорт"), default=False)

    FEATURES = (
        "predictive",
        "omnichannel",
        "value_bidding",
        "cohorts",
        "incrementality",
        "programmatic",
    )

    class Meta:
        verbose_name = _("тариф")
        verbose_name_plural = _("тарифы")
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name

    def has_feature(self, feature: str) -> bool:
        if feature not in self.FEATURES:
            raise ValueError(f"unknown tier feature {feature!r}")
        return bool(getattr(self, feature))


class ClientQuerySet(models.QuerySet):
    """Also the tenant protocol of ``agency.tenancy``: ``assigned_to`` and ``with_member``."""

    def active(self) -> ClientQuerySet:
        return self.filter(is_active=True)

    def assigned_to(self, user: Any) -> ClientQuerySet:
        """Clients an account manager is assigned to."""
        return self.filter(account_managers=user)

    def with_member(self, user: Any) -> ClientQuerySet:
        """Active clients whose portal ``user`` is a member of."""
        return self.filter(memberships__user=user, is_active=True)


class Client(models.Model):
    """The tenant: a company the agency serves."""

    name = models.CharField(_("название"), max_length=200)
    slug = models.SlugField(_("код"), max_length=60, unique=True)
    legal_name = models.CharField(_("юридическое наименование"), max_length=300, blank=True)
    inn = models.CharField(_("ИНН"), max_length=12, blank=True, validators=[validate_inn])
    tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, related_name="clients", verbose_name=_("тариф")
    )
    monthly_ad_spend = models.DecimalField(
        _("рекламный бюджет, ₽/мес"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    time_zone = models.CharField(
        _("часовой пояс"), max_length=64, default="Europe/Moscow", validators=[validate_time_zone]
    )
    pd_operator_registry_number = models.CharField(
        _("рег. номер оператора ПДн (РКН)"),
        max_length=40,
        blank=True,
        help_text=_("Номер в реестре операторов персональных данных Роскомнадзора."),
    )
    account_managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="managed_clients",
        verbose_name=_("аккаунт-менеджеры"),
    )
    webhook_secret = models.CharField(
        _("секрет вебхуков CRM"),
        max_length=64,
        blank=True,
        help_text=_(
            "Токен, которым CRM подтверждает вебхуки (Битрикс24: application_token; amoCRM: "
            "сегмент пути URL вебхука, см. «URL вебхука amoCRM»; в журналах маскируется)."
        ),
    )
    bitrix24_rest_encrypted = models.TextField(
        _("входящий вебхук Битрикс24 (зашифрован)"),
        blank=True,
        editable=False,
        help_text=_(
            "Адрес https://<портал>.bitrix24.ru/rest/<id>/<код>/, зашифрованный "
            "(agency.crypto): по нему платформа читает контакт и сделку, о которых сообщил "
            "исходящий вебхук (crm.contact.get, crm.deal.get)."
        ),
    )
    is_active = models.BooleanField(_("активен"), default=True)
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)

    objects = ClientQuerySet.as_manager()

    class Meta:
        verbose_name = _("клиент")
        verbose_name_plural = _("клиенты")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class ClientMembership(models.Model):
    """A portal user's access to one client."""

    class Role(models.TextChoices):
        OWNER = "owner", _("владелец")
        ANALYST = "analyst", _("аналитик")
        VIEWER = "viewer", _("наблюдатель")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="client_memberships",
        verbose_name=_("пользователь"),
    )
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("клиент")
    )
    role = models.CharField(_("роль"), max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(_("добавлен"), auto_now_add=True)

    class Meta:
        verbose_name = _("доступ к порталу")
        verbose_name_plural = _("доступы к порталу")
        constraints = [
            models.UniqueConstraint(fields=["client", "user"], name="membership_client_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.client} ({self.get_role_display()})"


class ApiKey(models.Model):
    """A per-client API key; only a hash of the secret is kept, the key is shown once."""

    class Scope(models.TextChoices):
        READ = "read", _("чтение")
        WRITE = "write", _("запись")

    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("клиент")
    )
    name = models.CharField(_("название"), max_length=100, blank=True)
    prefix = models.CharField(_("префикс"), max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(_("хеш секрета"), max_length=64, editable=False)
    scopes = models.JSONField(_("права"), default=list)
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("кем создан"),
    )
    revoked_at = models.DateTimeField(_("отозван"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("последнее использование"), null=True, blank=True)

    class Meta:
        verbose_name = _("API-ключ")
        verbose_name_plural = _("API-ключи")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.client} · {self.prefix}…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class TimestampedTenantModel(TenantModel):
    """Base of the high-volume tables (customers, orders, events).

    Their foreign keys have no database-level constraint: a per-row FK trigger would cost bulk
    loads about a fifth of their time. Integrity is kept by the one write path (clients.ingest
    resolves customers by a join within the client) and by Django's cascades on delete.
    """

    client = models.ForeignKey(
        "clients.Client",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("клиент"),
        db_index=False,
        db_constraint=False,
    )
    created_at = models.DateTimeField(_("создан"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("изменён"), default=timezone.now, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.updated_at = timezone.now()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at"}
        super().save(*args, **kwargs)


class Customer(TimestampedTenantModel):
    external_id = models.CharField(_("внешний id"), max_length=100)
    email = models.CharField("email", max_length=254, blank=True)
    phone = models.CharField(_("телефон (E.164)"), max_length=16, blank=True)
    first_name = models.CharField(_("имя"), max_length=100, blank=True)
    last_name = models.CharField(_("фамилия"), max_length=100, blank=True)
    city = models.CharField(_("город"), max_length=100, blank=True)
    attributes = models.JSONField(_("атрибуты"), default=dict, blank=True)
    first_seen = models.DateTimeField(_("впервые замечен"), default=timezone.now)
    source = models.CharField(_("источник"), max_length=50, blank=True)
    metrica_client_id = models.CharField(
        _("ClientID Яндекс Метрики"),
        max_length=64,
        blank=True,
        db_default="",  # ingestion inserts with SQL that names only its own columns
        help_text=_(
            "Из свойств _ym_uid / ym_client_id / metrica_client_id последнего события с ним: "
            "по нему покупки уходят в Метрику как офлайн-конверсии."
        ),
    )
    erased_at = models.DateTimeField(_("данные удалены"), null=True, blank=True)

    class Meta:
        verbose_name = _("покупатель")
        verbose_name_plural = _("покупатели")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_id"], name="customer_client_external_id_unique"
            )
        ]
        indexes = [
            models.Index(fields=["client", "email"], name="customer_client_email"),
            models.Index(fields=["client", "phone"], name="customer_client_phone"),
            models.Index(fields=["client", "updated_at", "id"], name="customer_client_updated"),
        ]

    def __str__(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or self.phone or self.external_id


class Order(TimestampedTenantModel):
    class Status(models.TextChoices):
        PAID = "paid", _("оплачен")
        REFUNDED = "refunded", _("возврат")
        CANCELLED = "cancelled", _("отменён")

    external_id = models.CharField(_("внешний id"), max_length=100)
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="orders",
        verbose_name=_("покупатель"),
        db_index=False,  # served by the (client, customer, ...) index
        db_constraint=False,  # see TimestampedTenantModel
    )
    placed_at = models.DateTimeField(_("оформлен"))
    amount = models.DecimalField(_("сумма, ₽"), max_digits=14, decimal_places=2)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.PAID
    )
    channel = models.CharField(_("канал"), max_length=50, blank=True)
    items = models.JSONField(_("позиции"), default=list, blank=True)

    class Meta:
        verbose_name = _("заказ")
        verbose_name_plural = _("заказы")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_id"], name="order_client_external_id_unique"
            ),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="order_amount_gte_0"),
        ]
        indexes = [
            # Covering (id, amount and status included): the monthly KPIs and attribution read a
            # client's paid orders in (customer, time) order from the index alone, no sort.
            models.Index(
                fields=["client", "customer", "placed_at"],
                include=["id", "amount", "status"],
                name="order_client_customer_cover",
            ),
            models.Index(fields=["client", "updated_at", "id"], name="order_client_updated"),
        ]

    def __str__(self) -> str:
        return f"№{self.external_id}"


EVENT_TYPE_RE = r"^[a-z][a-z0-9_]{0,49}$"


class Event(TimestampedTenantModel):
    class Type(models.TextChoices):
        REGISTRATION = "registration", _("регистрация")
        VISIT = "visit", _("визит")
        CART = "cart", _("корзина")
        PURCHASE = "purchase", _("покупка")
        EMAIL_OPEN = "email_open", _("открытие письма")
        EMAIL_CLICK = "email_click", _("клик в письме")
        SMS_CLICK = "sms_click", _("клик в SMS")
        PUSH_OPEN = "push_open", _("открытие push")
        APP_OPEN = "app_open", _("открытие приложения")
        PRODUCT_VIEW = "product_view", _("просмотр товара")

    external_id = models.CharField(
        _("внешний id"),
        max_length=100,
        help_text=_(
            "Если источник не дал id, он выводится из содержания события, чтобы повторная "
            "отправка не создавала дубль."
        ),
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=_("покупатель"),
        db_index=False,  # served by the (client, customer, ...) index
        db_constraint=False,  # see TimestampedTenantModel
    )
    type = models.CharField(
        _("тип"),
        max_length=50,
        validators=[RegexValidator(EVENT_TYPE_RE)],
        help_text=_("Напр. visit, cart."),
    )
    occurred_at = models.DateTimeField(_("произошло"))
    properties = models.JSONField(_("свойства"), default=dict, blank=True)
    utm_source = models.CharField("utm_source", max_length=100, blank=True)
    utm_medium = models.CharField("utm_medium", max_length=100, blank=True)
    utm_campaign = models.CharField("utm_campaign", max_length=200, blank=True)

    class Meta:
        verbose_name = _("событие")
        verbose_name_plural = _("события")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_id"], name="event_client_external_id_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["client", "customer", "occurred_at"], name="event_client_customer"
            ),
            models.Index(fields=["client", "type", "occurred_at"], name="event_client_type"),
            models.Index(fields=["client", "updated_at", "id"], name="event_client_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {client_localtime(self, self.occurred_at):%Y-%m-%d %H:%M}"


def import_upload_path(instance: ImportJob, filename: str) -> str:
    return f"imports/{instance.client_id}/{timezone.now():%Y/%m/%d}/{filename}"


class ImportJob(BackgroundJob, TenantModel):
    class Kind(models.TextChoices):
        CUSTOMERS = "customers", _("покупатели")
        ORDERS = "orders", _("заказы")
        EVENTS = "events", _("события")

    class Status(models.TextChoices):
        PENDING = "pending", _("в очереди")
        RUNNING = "running", _("выполняется")
        SUCCEEDED = "succeeded", _("выполнен")
        REJECTED = "rejected", _("отклонён (ошибки в строках)")
        FAILED = "failed", _("сбой")

    kind = models.CharField(_("что загружаем"), max_length=20, choices=Kind.choices)
    file = models.FileField(_("файл CSV"), upload_to=import_upload_path)
    delimiter = models.CharField(_("разделитель"), max_length=1, default=",")
    encoding = models.CharField(_("кодировка"), max_length=20, default="utf-8")
    partial = models.BooleanField(
        _("принять корректные строки"),
        default=False,
        help_text=_("Без отметки файл загружается целиком или не загружается вовсе."),
    )
    status = job_status_field(Status)
    rows_total = models.PositiveBigIntegerField(_("строк всего"), default=0)
    rows_processed = models.PositiveBigIntegerField(_("строк обработано"), default=0)
    rows_ok = models.PositiveBigIntegerField(_("строк принято"), default=0)
    rows_rejected = models.PositiveBigIntegerField(_("строк отклонено"), default=0)
    rows_created = models.PositiveBigIntegerField(_("создано"), default=0)
    rows_updated = models.PositiveBigIntegerField(_("обновлено"), default=0)
    error_report = models.FileField(
        _("отчёт об ошибках (CSV)"), upload_to=import_upload_path, blank=True
    )
    error_message = models.TextField(_("ошибка"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("кем загружен"),
    )

    recovery_reset = {"rows_processed": 0}

    class Meta:
        verbose_name = _("импорт CSV")
        verbose_name_plural = _("импорты CSV")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["client", "-created_at"], name="importjob_client_created")]

    def __str__(self) -> str:
        created = client_localtime(self, self.created_at)
        return f"{self.get_kind_display()} · {created:%Y-%m-%d %H:%M}"

    @property
    def rows_unchanged(self) -> int:
        """Accepted rows that changed nothing (their values were already stored)."""
        return max(self.rows_ok - self.rows_created - self.rows_updated, 0)

    @property
    def progress_percent(self) -> int:
        """From the rows read so far (an import has no stages)."""
        if self.status in (self.Status.SUCCEEDED, self.Status.REJECTED):
            return 100
        if not self.rows_total:
            return 0
        return min(100, int(100 * self.rows_processed / self.rows_total))

    def pulse_fields(self) -> dict:
        # The rows are written in one transaction, which the job's own progress writes would
        # sit in unseen: the heartbeat thread writes the count instead.
        return {"rows_processed": self.rows_processed}


class CrmDeal(TenantModel):
    """A CRM deal (Bitrix24) or lead (amoCRM) as the client's webhooks described it.

    The CRMs describe a deal and its contact in separate hooks: amoCRM's lead hooks never carry
    the contact (the link comes only with contact hooks, ``linked_leads_id``), and a Bitrix24
    deal may name a contact not sent yet. Each hook adds what it knows to this row, so that a
    won deal becomes an order once its contact is known as a customer, whichever hook came first
    (``clients.services.crm_webhook_ingest``). ``skipped_reason`` says why it is not one yet.
    """

    class Crm(models.TextChoices):
        BITRIX24 = "bitrix24", _("Битрикс24")
        AMOCRM = "amocrm", "amoCRM"

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("CRM deal", "в работе")
        WON = "won", _("выиграна")
        LOST = "lost", _("проиграна")

    # Prefix of the customer and order external ids written for this CRM's contacts and deals.
    EXTERNAL_ID_PREFIXES = {Crm.BITRIX24: BITRIX24_PREFIX, Crm.AMOCRM: AMOCRM_PREFIX}
    ID_MAX_LENGTH = 64  # with the prefix it fits Customer/Order.external_id (100)

    crm = models.CharField("CRM", max_length=20, choices=Crm.choices)
    deal_id = models.CharField(_("id сделки в CRM"), max_length=ID_MAX_LENGTH)
    contact_id = models.CharField(
        _("id контакта в CRM"),
        max_length=ID_MAX_LENGTH,
        null=True,
        blank=True,
        help_text=_("Пусто, пока CRM не сообщила контакт сделки."),
    )
    stage = models.CharField(
        _("стадия в CRM"),
        max_length=100,
        blank=True,
        help_text=_("STAGE_ID Битрикс24, status_id amoCRM."),
    )
    status = models.CharField(
        _("статус"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    amount = models.DecimalField(_("сумма"), max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("валюта"), max_length=16, blank=True)
    closed_at = models.DateTimeField(_("закрыта в CRM"), null=True, blank=True)
    created_at = models.DateTimeField(_("создана в CRM"), null=True, blank=True)
    last_payload_at = models.DateTimeField(_("последний вебхук"), default=timezone.now)
    order_external_id = models.CharField(
        _("внешний id заказа"),
        max_length=100,
        null=True,
        blank=True,
        help_text=_("Пусто, пока по сделке не записан заказ."),
    )
    skipped_reason = models.CharField(_("почему не заказ"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("сделка CRM")
        verbose_name_plural = _("сделки CRM")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "crm", "deal_id"], name="crmdeal_client_crm_deal_unique"
            )
        ]
        indexes = [
            models.Index(fields=["client", "crm", "contact_id"], name="crmdeal_client_contact"),
            # Won deals with a contact still waiting for their order: on every webhook of the
            # client, those whose customer now exists become orders.
            models.Index(
                fields=["client"],
                condition=models.Q(
                    status="won", order_external_id__isnull=True, contact_id__isnull=False
                ),
                name="crmdeal_client_won_waiting",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_crm_display()} №{self.deal_id}"

    @property
    def external_id(self) -> str:
        """The external id of the order this deal becomes."""
        return self.EXTERNAL_ID_PREFIXES[self.crm] + self.deal_id

    @property
    def customer_external_id(self) -> str | None:
        """The external id of the deal's customer, once the contact is known."""
        if not self.contact_id:
            return None
        return self.EXTERNAL_ID_PREFIXES[self.crm] + self.contact_id
