"""Report settings per client, the ad accounts the platform reads spend from and sends value
back to, and daily spend rows."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from agency.tenancy import TenantModel


class ReportSettings(TenantModel):
    """What a client's reports assume: message costs (for a chain's ROI), the agency's benchmark
    share of revenue from triggered messages, attribution's half-life and the revenue interval."""

    class RevenueInterval(models.TextChoices):
        WELCH = "welch", _("Уэлч (t-интервал)")
        BOOTSTRAP = "bootstrap", _("бутстрап по людям (тяжёлые хвосты)")

    cost_email = models.DecimalField(
        _("стоимость письма, ₽"), max_digits=10, decimal_places=4, default=Decimal("0.10")
    )
    cost_sms = models.DecimalField(
        _("стоимость SMS, ₽"), max_digits=10, decimal_places=4, default=Decimal("3.50")
    )
    cost_push = models.DecimalField(
        _("стоимость push, ₽"), max_digits=10, decimal_places=4, default=Decimal("0.02")
    )
    triggered_revenue_benchmark = models.DecimalField(
        _("ориентир доли выручки от триггеров, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("22.40"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    attribution_half_life_days = models.PositiveSmallIntegerField(
        _("период полураспада для атрибуции, дней"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
    )
    revenue_interval = models.CharField(
        _("интервал для выручки"),
        max_length=10,
        choices=RevenueInterval.choices,
        default=RevenueInterval.WELCH,
    )

    class Meta:
        verbose_name = _("настройки отчётов")
        verbose_name_plural = _("настройки отчётов")
        constraints = [
            models.UniqueConstraint(fields=["client"], name="reportsettings_client_unique")
        ]

    def __str__(self) -> str:
        return str(_("настройки отчётов"))


class AdAccount(TenantModel):
    """A client's account in an ad or analytics system: where spend, calls and visits come
    from and where value goes back. Credentials are encrypted (``agency.crypto``) and never
    shown back."""

    class Provider(models.TextChoices):
        DIRECT = "direct", _("Яндекс Директ")
        METRICA = "metrica", _("Яндекс Метрика")
        ROISTAT = "roistat", "Roistat"
        CALLTOUCH = "calltouch", "Calltouch"

    provider = models.CharField(_("система"), max_length=20, choices=Provider.choices)
    name = models.CharField(_("название"), max_length=200, blank=True)
    login = models.CharField(
        _("логин"),
        max_length=200,
        blank=True,
        help_text=_("Client-Login рекламодателя в Директе (для агентских аккаунтов)."),
    )
    remote_id = models.CharField(
        _("идентификатор"),
        max_length=100,
        blank=True,
        help_text=_("Номер счётчика Метрики, проекта Roistat или сайта Calltouch."),
    )
    credentials_encrypted = models.TextField(
        _("учётные данные (зашифрованы)"), blank=True, editable=False
    )

    class ClientIdType(models.TextChoices):
        CLIENT_ID = "CLIENT_ID", _("ClientID Метрики (cookie _ym_uid)")
        USER_ID = "USER_ID", _("UserId (внешний id покупателя)")

    is_active = models.BooleanField(_("включён"), default=True)
    conversion_target = models.CharField(
        _("цель (Target) офлайн-конверсий"),
        max_length=100,
        blank=True,
        help_text=_("Идентификатор цели счётчика Метрики, в которую уходят покупки."),
    )
    client_id_type = models.CharField(
        _("как счётчик узнаёт посетителя"),
        max_length=10,
        choices=ClientIdType.choices,
        default=ClientIdType.CLIENT_ID,
        help_text=_("UserId — только если сайт передаёт в Метрику внешний id покупателя."),
    )
    last_imported_at = models.DateTimeField(_("последний импорт"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("последняя попытка"), null=True, blank=True)
    last_error = models.TextField(_("ошибка последней попытки"), blank=True)
    last_result = models.JSONField(_("итог последней попытки"), default=dict, blank=True)
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)

    class Meta:
        verbose_name = _("рекламный аккаунт")
        verbose_name_plural = _("рекламные аккаунты")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "provider", "remote_id", "login"], name="adaccount_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()}: {self.name or self.remote_id or self.login}"


class SpendDay(TenantModel):
    """Spend and traffic of one campaign (or channel) on one day from one source. A second
    import of the same day replaces the day (``reports.spend.spend_day_replace``)."""

    class Source(models.TextChoices):
        DIRECT = "direct", _("Яндекс Директ")
        ROISTAT = "roistat", "Roistat"
        CSV = "csv", _("CSV-файл")

    source = models.CharField(_("источник"), max_length=20, choices=Source.choices)
    day = models.DateField(_("день"))
    campaign = models.CharField(
        _("кампания или канал"),
        max_length=200,
        help_text=_("Id кампании Директа, канал Roistat или название из файла."),
    )
    campaign_name = models.CharField(_("название кампании"), max_length=300, blank=True)
    channel = models.CharField(_("канал"), max_length=100, blank=True)
    cost = models.DecimalField(_("расход, ₽"), max_digits=14, decimal_places=2)
    clicks = models.PositiveIntegerField(_("клики"), default=0)
    impressions = models.PositiveBigIntegerField(_("показы"), default=0)
    visits = models.PositiveIntegerField(_("визиты"), default=0)
    leads = models.PositiveIntegerField(_("лиды"), default=0)
    sales = models.PositiveIntegerField(_("продажи"), default=0)
    revenue = models.DecimalField(_("выручка, ₽"), max_digits=14, decimal_places=2, default=0)
    imported_at = models.DateTimeField(_("загружено"), auto_now=True)

    class Meta:
        verbose_name = _("расход за день")
        verbose_name_plural = _("расходы по дням")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "source", "day", "campaign"], name="spendday_unique"
            ),
            models.CheckConstraint(condition=models.Q(cost__gte=0), name="spendday_cost_gte_0"),
        ]
        indexes = [models.Index(fields=["client", "day"], name="spendday_client_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.campaign}: {self.cost} ₽"


class BidModifierChange(TenantModel):
    """One application of recommended Yandex Direct bid modifiers to chosen campaigns: what was
    changed, what each item was before (for the one-click rollback) and how each item went
    (``reports.bidding``)."""

    class Status(models.TextChoices):
        APPLYING = "applying", _("применяется")
        APPLIED = "applied", _("применено")
        PARTIAL = "partial", _("применено частично")
        FAILED = "failed", _("не применено")
        ROLLED_BACK = "rolled_back", _("откачено")
        ROLLBACK_PARTIAL = "rollback_partial", _("откачено частично")

    ad_account = models.ForeignKey(
        AdAccount, on_delete=models.PROTECT, related_name="+", verbose_name=_("аккаунт Директа")
    )
    campaign_ids = models.JSONField(_("кампании"), default=list)
    exclude_bottom = models.BooleanField(_("нижние 20 % исключены"), default=False)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.APPLYING
    )
    message = models.TextField(_("сообщение"), blank=True)
    units_remaining = models.IntegerField(_("баллов осталось"), null=True, blank=True)
    created_by = models.CharField(_("кто применил"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("создано"), auto_now_add=True)
    rolled_back_at = models.DateTimeField(_("откачено"), null=True, blank=True)

    class Meta:
        verbose_name = _("изменение корректировок ставок")
        verbose_name_plural = _("изменения корректировок ставок")
        indexes = [models.Index(fields=["client", "-created_at"], name="bidchange_client_created")]

    def __str__(self) -> str:
        return str(_("Корректировки ставок №%(id)s") % {"id": self.pk})


class BidModifierChangeItem(TenantModel):
    """One retargeting adjustment of one campaign: added (no previous value) or set (previous
    value kept), its result and, after a rollback, the rollback's result."""

    class Status(models.TextChoices):
        PENDING = "pending", _("ожидает")
        APPLIED = "applied", _("применено")
        FAILED = "failed", _("ошибка")
        NOT_APPLIED = "not_applied", _("не применено")

    class Rollback(models.TextChoices):
        NONE = "", _("—")
        ROLLED_BACK = "rolled_back", _("откачено")
        FAILED = "failed", _("ошибка отката")
        NOT_APPLIED = "not_applied", _("не откачено")

    change = models.ForeignKey(
        BidModifierChange,
        on_delete=models.CASCADE,
        related_name="items",
        verbose_name=_("изменение"),
    )
    campaign_id = models.BigIntegerField(_("кампания"))
    audience = models.ForeignKey(
        "audiences.Audience",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("аудитория"),
    )
    audience_name = models.CharField(_("название аудитории"), max_length=300, blank=True)
    retargeting_list_id = models.BigIntegerField(_("условие ретаргетинга"))
    modifier_id = models.BigIntegerField(_("id корректировки"), null=True, blank=True)
    previous_value = models.IntegerField(
        _("было, %"), null=True, blank=True, help_text=_("Пусто — корректировка была добавлена.")
    )
    new_value = models.IntegerField(_("стало, %"))
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    error = models.TextField(_("ошибка"), blank=True)
    rollback_status = models.CharField(
        _("откат"), max_length=20, choices=Rollback.choices, default=Rollback.NONE, blank=True
    )
    rollback_error = models.TextField(_("ошибка отката"), blank=True)

    class Meta:
        verbose_name = _("корректировка ставки")
        verbose_name_plural = _("корректировки ставок")
        indexes = [models.Index(fields=["client", "change"], name="bidchangeitem_client_change")]

    def __str__(self) -> str:
        before = "—" if self.previous_value is None else self.previous_value
        return f"{self.campaign_id} / {self.retargeting_list_id}: {before} → {self.new_value}"

    @property
    def action(self) -> str:
        return "set" if self.previous_value is not None else "add"


class MetricaUpload(TenantModel):
    """One upload of purchases to a Metrica counter as offline conversions, polled until
    Metrica's status is final. ``skipped`` counts the purchases left out, by reason."""

    class Status(models.TextChoices):
        PENDING = "PENDING", _("ожидает отправки")
        UPLOADED = "UPLOADED", _("загружено, обрабатывается")
        PROCESSED = "PROCESSED", _("обработано")
        LINKAGE_FAILURE = "LINKAGE_FAILURE", _("не сопоставлено")
        FAILED = "FAILED", _("отклонено")

    FINAL = (Status.PROCESSED, Status.LINKAGE_FAILURE, Status.FAILED)

    account = models.ForeignKey(
        AdAccount,
        on_delete=models.PROTECT,
        related_name="metrica_uploads",
        verbose_name=_("счётчик"),
        db_index=False,
    )
    counter = models.CharField(_("номер счётчика"), max_length=100)
    client_id_type = models.CharField(_("тип идентификатора"), max_length=10)
    comment = models.CharField(_("метка загрузки"), max_length=100)
    status = models.CharField(
        _("статус"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    remote_id = models.CharField(_("id загрузки в Метрике"), max_length=50, blank=True)
    rows = models.PositiveIntegerField(_("строк отправлено"), default=0)
    line_quantity = models.PositiveIntegerField(_("строк принято Метрикой"), null=True, blank=True)
    revenue = models.DecimalField(_("сумма покупок, ₽"), max_digits=14, decimal_places=2, default=0)
    skipped = models.JSONField(_("пропущено по причинам"), default=dict, blank=True)
    error = models.TextField(_("ошибка"), blank=True)
    created_at = models.DateTimeField(_("создана"), auto_now_add=True)
    checked_at = models.DateTimeField(_("статус проверен"), null=True, blank=True)
    finished_at = models.DateTimeField(_("завершена"), null=True, blank=True)

    class Meta:
        verbose_name = _("загрузка офлайн-конверсий")
        verbose_name_plural = _("загрузки офлайн-конверсий")
        constraints = [
            models.UniqueConstraint(fields=["client", "comment"], name="metricaupload_comment")
        ]
        indexes = [
            models.Index(fields=["client", "account", "status"], name="metricaupload_status"),
        ]

    def __str__(self) -> str:
        return f"{self.counter}: {self.comment}"

    @property
    def rejected_lines(self) -> int | None:
        """Rows sent that Metrica did not take (``rows`` − ``line_quantity``), once known."""
        if self.line_quantity is None:
            return None
        return max(self.rows - self.line_quantity, 0)


class MetricaUploadOrder(TenantModel):
    """An order sent to a counter: the unique key makes a second upload of it impossible."""

    upload = models.ForeignKey(
        MetricaUpload, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    account = models.ForeignKey(
        AdAccount, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    order = models.ForeignKey(
        "clients.Order",
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )

    class Meta:
        verbose_name = _("заказ в загрузке")
        verbose_name_plural = _("заказы в загрузках")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "account", "order"], name="metricauploadorder_once"
            )
        ]
        indexes = [models.Index(fields=["client", "upload"], name="metricauploadorder_upload")]


class ChainTestPlan(TenantModel):
    """The planned horizon of a chain's holdout test, fixed up front (no peeking): the design it
    came from (baseline, effect to detect, alpha, power, split), the people it needs per arm and
    the date after which its result may be read. Set from the calculator (API or admin) or by
    hand in the admin; without a plan the horizon is the conversion window after the last
    enrolment of the period (``reports.results``)."""

    chain = models.OneToOneField(
        "campaigns.TriggerChain",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("цепочка"),
    )
    baseline_rate = models.FloatField(
        _("конверсия контрольной группы"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
    )
    mde_absolute = models.FloatField(_("минимальный эффект (абс.)"), null=True, blank=True)
    alpha = models.FloatField(_("уровень значимости"), default=0.05)
    power = models.FloatField(_("мощность"), default=0.8)
    planned_treatment_n = models.PositiveIntegerField(
        _("нужно людей в основной группе"), null=True, blank=True
    )
    planned_control_n = models.PositiveIntegerField(
        _("нужно людей в контрольной группе"), null=True, blank=True
    )
    planned_end = models.DateField(
        _("вывод не раньше"),
        help_text=_("До этой даты результат теста показывается без вывода о победителе."),
    )
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    updated_at = models.DateTimeField(_("изменён"), auto_now=True)

    class Meta:
        verbose_name = _("план теста цепочки")
        verbose_name_plural = _("планы тестов цепочек")
        indexes = [models.Index(fields=["client", "chain"], name="chaintestplan_client_chain")]

    def __str__(self) -> str:
        return f"{self.chain}: {self.planned_end}"


class AttributionReport(ReportSettings):
    """The admin's page comparing attribution models (``reports.admin.attribution``): a proxy,
    no table of its own."""

    class Meta:
        proxy = True
        verbose_name = _("атрибуция")
        verbose_name_plural = _("атрибуция: сравнение моделей")


class KpiMonth(TenantModel):
    """A client's customer KPIs for one calendar month of the client's time zone, stored for
    trends (written by ``reports.kpis.kpis_compute``, nightly; every figure and its definition
    is in that module's docstring). A ratio whose denominator is zero is null, never 0."""

    month = models.DateField(_("месяц"), help_text=_("Первый день месяца."))
    revenue = models.DecimalField(_("выручка, ₽"), max_digits=18, decimal_places=2, default=0)
    orders = models.PositiveIntegerField(_("заказы"), default=0)
    buyers = models.PositiveIntegerField(_("покупатели месяца"), default=0)
    new_customers = models.PositiveIntegerField(_("новые покупатели"), default=0)
    active_customers = models.PositiveIntegerField(_("активные покупатели (12 мес.)"), default=0)
    active_at_start = models.PositiveIntegerField(_("активные на начало месяца"), default=0)
    churned_customers = models.PositiveIntegerField(_("ушедшие покупатели"), default=0)
    repeat_buyers = models.PositiveIntegerField(_("покупатели с повторными заказами"), default=0)
    customers_to_date = models.PositiveIntegerField(_("покупатели за всё время"), default=0)
    spend = models.DecimalField(
        _("рекламный расход, ₽"), max_digits=18, decimal_places=2, null=True, blank=True
    )
    repeat_purchase_rate = models.DecimalField(
        _("доля повторных покупок"), max_digits=7, decimal_places=4, null=True
    )
    retention_rate = models.DecimalField(_("удержание"), max_digits=7, decimal_places=4, null=True)
    churn_rate = models.DecimalField(_("отток"), max_digits=7, decimal_places=4, null=True)
    arpu = models.DecimalField(_("ARPU, ₽"), max_digits=18, decimal_places=2, null=True)
    aov = models.DecimalField(_("средний чек, ₽"), max_digits=18, decimal_places=2, null=True)
    purchase_frequency = models.DecimalField(
        _("частота покупок"), max_digits=10, decimal_places=4, null=True
    )
    historical_clv = models.DecimalField(
        _("исторический CLV, ₽"), max_digits=18, decimal_places=2, null=True
    )
    predicted_clv = models.DecimalField(
        _("прогноз CLV, ₽"), max_digits=18, decimal_places=2, null=True
    )
    cac = models.DecimalField(_("CAC, ₽"), max_digits=18, decimal_places=2, null=True)
    ltv_cac = models.DecimalField(_("LTV/CAC"), max_digits=14, decimal_places=4, null=True)
    roas = models.DecimalField(_("ROAS"), max_digits=14, decimal_places=4, null=True)
    clv_roas = models.DecimalField(_("ROAS по CLV"), max_digits=14, decimal_places=4, null=True)
    cohort_clv = models.DecimalField(
        _("CLV когорты, ₽"), max_digits=18, decimal_places=2, null=True
    )
    computed_at = models.DateTimeField(_("рассчитано"))

    class Meta:
        verbose_name = _("KPI за месяц")
        verbose_name_plural = _("KPI по месяцам")
        constraints = [
            models.UniqueConstraint(fields=["client", "month"], name="kpimonth_client_month")
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}"
