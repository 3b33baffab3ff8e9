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
    is_active = models.BooleanField(_("включён"), default=True)
    last_imported_at = models.DateTimeField(_("последний импорт"), null=True, blank=True)
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
