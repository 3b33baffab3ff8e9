"""Scores of a client's customers, the runs that compute them, per-client scoring settings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from agency.i18n import client_localtime
from agency.jobs import ACTIVE_STATES, BackgroundJob, job_status_field
from agency.tenancy import TenantManager, TenantModel


class ScoringSettings(TenantModel):
    """Per-client thresholds and money assumptions of the scoring pipeline."""

    onboarding_days = models.PositiveSmallIntegerField(
        _("онбординг, дней после первой покупки"), default=30
    )
    at_risk_after_days = models.PositiveSmallIntegerField(_("в зоне риска после, дней"), default=30)
    win_back_after_days = models.PositiveSmallIntegerField(
        _("возврат (win-back) после, дней"), default=60
    )
    clv_months = models.PositiveSmallIntegerField(
        _("горизонт CLV, месяцев"),
        default=12,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
    )
    monthly_discount_rate = models.DecimalField(
        _("ставка дисконтирования в месяц"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.0100"),
    )
    gross_margin = models.DecimalField(
        _("валовая маржа"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.3500"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    holdout_days = models.PositiveSmallIntegerField(
        _("контрольный период проверки модели, дней"), default=90
    )
    recommendations_count = models.PositiveSmallIntegerField(
        "рекомендаций товаров покупателю",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Сколько товаров рассчитывать каждому покупателю для {{ recommendations }} "
        "в сообщениях (купленные вместе с его покупками, затем хиты продаж за 90 дней).",
    )

    class Meta:
        verbose_name = _("настройки скоринга")
        verbose_name_plural = _("настройки скоринга")
        constraints = [models.UniqueConstraint(fields=["client"], name="scoringsettings_client")]

    def __str__(self) -> str:
        return _("Скоринг: %(client)s") % {"client": self.client}


class ScoringRun(BackgroundJob, TenantModel):
    """One computation of every score of a client: when, how long, what the models said."""

    class Status(models.TextChoices):
        PENDING = "pending", _("в очереди")
        RUNNING = "running", _("выполняется")
        SUCCEEDED = "succeeded", _("выполнен")
        FAILED = "failed", _("сбой")

    status = job_status_field(Status)
    as_of = models.DateField(_("на дату"), null=True, blank=True)
    duration_seconds = models.FloatField(_("длительность, с"), null=True, blank=True)
    progress = models.PositiveSmallIntegerField(_("ход, %"), default=0)
    stage = models.CharField(_("этап"), max_length=100, blank=True)
    customers = models.PositiveIntegerField(_("покупателей оценено"), default=0)
    orders = models.PositiveBigIntegerField(_("заказов учтено"), default=0)
    parameters = models.JSONField(_("параметры моделей"), default=dict, blank=True)
    holdout = models.JSONField(_("проверка на контрольном периоде"), default=dict, blank=True)
    stage_seconds = models.JSONField(_("время этапов, с"), default=dict, blank=True)
    rfm_transitions = models.JSONField(
        _("переходы между RFM-сегментами"),
        default=dict,
        blank=True,
        help_text=_("{сегмент прошлого запуска: {сегмент этого запуска: покупателей}}."),
    )
    error = models.TextField(_("ошибка"), blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("запущен"),
    )
    source = models.CharField(_("источник"), max_length=20, default="beat")

    lost_after = dt.timedelta(minutes=30)
    recovery_reset = {"progress": 0, "stage": ""}

    class Meta:
        verbose_name = _("запуск скоринга")
        verbose_name_plural = _("запуски скоринга")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["client", "-created_at"], name="scoringrun_client_created")]
        constraints = [
            # One computation of a client at a time (segments.services.scoring_run_request).
            models.UniqueConstraint(
                fields=["client"],
                condition=models.Q(status__in=ACTIVE_STATES),
                name="scoringrun_one_active_per_client",
            )
        ]

    def __str__(self) -> str:
        when = client_localtime(self, self.created_at)
        return _("Скоринг %(when)s · %(status)s") % {
            "when": f"{when:%d.%m.%Y %H:%M}",
            "status": self.get_status_display(),
        }


class CustomerScore(models.Model):
    """The latest scores of one customer (replaced as a whole by each successful run).

    The customer is the primary key: one index only, so that a run can rewrite a million rows
    quickly; the client is kept on the row for scoping.
    """

    customer = models.OneToOneField(
        "clients.Customer",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="score",
        verbose_name=_("покупатель"),
        db_constraint=False,
    )
    client = models.ForeignKey(
        "clients.Client",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("клиент"),
        db_index=False,
        db_constraint=False,
    )
    run = models.ForeignKey(
        ScoringRun,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("запуск"),
        db_index=False,
        db_constraint=False,
    )
    recency_days = models.IntegerField(_("давность, дней"), null=True)
    frequency = models.IntegerField(_("заказов"), default=0)
    # numeric(18, 2): a sum of orders (each at most numeric(14, 2)) and the models' predictions
    # from it must fit, or a client's whole scoring run would fail on one big customer.
    monetary = models.DecimalField(_("сумма, ₽"), max_digits=18, decimal_places=2, default=0)
    r_score = models.PositiveSmallIntegerField("R", null=True)
    f_score = models.PositiveSmallIntegerField("F", null=True)
    m_score = models.PositiveSmallIntegerField("M", null=True)
    rfm_segment = models.CharField(_("RFM-сегмент"), max_length=30, blank=True)
    lifecycle_stage = models.CharField(_("стадия жизненного цикла"), max_length=20, blank=True)
    at_risk = models.BooleanField(_("в зоне риска"), default=False)
    p_alive = models.FloatField(_("P(активен)"), null=True)
    churn_probability = models.FloatField(_("вероятность оттока"), null=True)
    expected_purchases_90d = models.FloatField(_("ожидаемых покупок за 90 дней"), null=True)
    expected_order_value = models.DecimalField(
        _("ожидаемый средний чек, ₽"), max_digits=18, decimal_places=2, null=True
    )
    predicted_clv = models.DecimalField(
        _("прогноз CLV, ₽"), max_digits=18, decimal_places=2, null=True
    )
    clv_percentile = models.PositiveSmallIntegerField(_("перцентиль CLV"), null=True)
    computed_at = models.DateTimeField(_("рассчитано"))

    objects = TenantManager()

    class Meta:
        verbose_name = _("оценка покупателя")
        verbose_name_plural = _("оценки покупателей")

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.rfm_segment}"


# --------------------------------------------------------------------------------------------
# Segments and memberships


class Segment(TenantModel):
    """A named group of a client's customers, defined by ``kind`` and ``definition``.

    Definition shapes (checked by ``segments.segmentation.segment_definition_validate``):

    - rfm: ``{"names": ["Champions", ...]}`` (names of ``segments.rfm.SEGMENTS``);
    - lifecycle: ``{"stages": ["Onboarding", ...]}`` (``segments.lifecycle.STAGES``);
    - predictive: ``{"churn_at_least": 0.7}`` | ``{"clv_top_percent": 10}`` |
      ``{"clv_decile": 10}``;
    - rule: a rule tree of ``segments.rules``;
    - lookalike_seed: ``{"top_percent": 20, "by": "predicted_clv" | "monetary"}``;
    - suppression: ``{"type": "recent_purchasers", "days": 30}`` |
      ``{"type": "existing_customers"}`` | ``{"type": "opted_out", "purpose": "ad_audiences"}``.

    Who is in it is kept in :class:`SegmentMembership`; ``size`` and ``warnings`` are what the
    last refresh found.
    """

    class Kind(models.TextChoices):
        RFM = "rfm", "RFM"
        LIFECYCLE = "lifecycle", _("жизненный цикл")
        PREDICTIVE = "predictive", _("предиктивный (отток, CLV)")
        RULE = "rule", _("по правилу")
        LOOKALIKE_SEED = "lookalike_seed", _("основа для look-alike")
        SUPPRESSION = "suppression", _("исключения")

    name = models.CharField(_("название"), max_length=200)
    kind = models.CharField(_("вид"), max_length=20, choices=Kind.choices)
    definition = models.JSONField(_("определение"), default=dict, blank=True)
    is_active = models.BooleanField(
        _("активен"), default=True, help_text=_("Неактивный сегмент не обновляется и не в лимите.")
    )
    size = models.PositiveIntegerField(_("участников"), default=0, editable=False)
    warnings = models.JSONField(_("предупреждения"), default=list, blank=True, editable=False)
    refreshed_at = models.DateTimeField(_("обновлён"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("кем создан"),
        editable=False,
    )
    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    updated_at = models.DateTimeField(_("изменён"), auto_now=True)

    class Meta:
        verbose_name = _("сегмент")
        verbose_name_plural = _("сегменты")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="segment_client_name_unique")
        ]
        indexes = [
            models.Index(fields=["client", "is_active"], name="segment_client_active"),
            models.Index(fields=["client", "updated_at", "id"], name="segment_client_updated"),
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMembership(TenantModel):
    """One stay of a customer in a segment: open (``left_at`` null) while they are a member.

    Written only by ``segments.segmentation.segment_refresh``, set-based (INSERT ... SELECT from
    the client's customers, UPDATE ... WHERE NOT EXISTS), so the customer key carries no
    database constraint (a per-row FK trigger would slow a million-row refresh, see
    ``clients.models.TimestampedTenantModel``).
    """

    client = models.ForeignKey(
        "clients.Client",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("клиент"),
        db_index=False,
        db_constraint=False,
    )
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("сегмент"),
        db_index=False,  # served by the (client, segment, ...) indexes
        db_constraint=False,
    )
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="segment_memberships",
        verbose_name=_("покупатель"),
        db_index=False,  # served by the (client, customer) index
        db_constraint=False,
    )
    entered_at = models.DateTimeField(_("вошёл"))
    left_at = models.DateTimeField(_("вышел"), null=True, blank=True)

    class Meta:
        verbose_name = _("участие в сегменте")
        verbose_name_plural = _("участие в сегментах")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "segment", "customer"],
                condition=models.Q(left_at__isnull=True),
                name="segmentmember_current_unique",
            )
        ]
        indexes = [
            models.Index(
                fields=["client", "segment", "entered_at"], name="segmentmember_client_segment"
            ),
            models.Index(fields=["client", "customer"], name="segmentmember_client_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} ∈ {self.segment_id}"


class SegmentSizeSnapshot(TenantModel):
    """What one refresh changed: the size after it and how many entered and left.

    Written when a refresh changed something (and once for a segment's first refresh), so a
    repeated refresh of an unchanged segment writes nothing; the size between two snapshots is
    the earlier one's.
    """

    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="snapshots",
        verbose_name=_("сегмент"),
        db_index=False,  # served by the (client, segment, at) index
    )
    run = models.ForeignKey(
        ScoringRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("после запуска скоринга"),
        db_index=False,
    )
    at = models.DateTimeField(_("когда"))
    size = models.PositiveIntegerField(_("участников"))
    entered = models.PositiveIntegerField(_("вошли"))
    left = models.PositiveIntegerField(_("вышли"))

    class Meta:
        verbose_name = _("размер сегмента")
        verbose_name_plural = _("размеры сегментов")
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["client", "segment", "at"], name="segmentsnapshot_client_at")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} · {client_localtime(self, self.at):%Y-%m-%d %H:%M}: {self.size}"


# --------------------------------------------------------------------------------------------
# Recommendations (next best offer)


class CustomerRecommendation(TenantModel):
    """The products recommended to one customer, as the latest scoring run computed them
    (``segments.recommend``: bought together with what they bought, best sellers of the last
    90 days to fill), for ``{{ recommendations }}`` in messages.

    ``products`` is a list in rank order of ``{"id": SKU, "name": name, "price": "1234.50" or
    null, "source": "co_purchase" | "best_seller"}``, names and unit prices as last seen in the
    client's orders. Replaced as a whole for the client by each successful run (delete and
    COPY), so the keys carry no database constraint, as ``SegmentMembership``'s."""

    client = models.ForeignKey(
        "clients.Client",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name="клиент",
        db_index=False,
        db_constraint=False,
    )
    customer = models.ForeignKey(
        "clients.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name="покупатель",
        db_index=False,  # served by the (client, customer) unique index
        db_constraint=False,
    )
    run = models.ForeignKey(
        ScoringRun,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name="запуск",
        db_index=False,
        db_constraint=False,
    )
    products = models.JSONField("рекомендованные товары", default=list)
    computed_at = models.DateTimeField("рассчитано")

    class Meta:
        verbose_name = "рекомендации покупателю"
        verbose_name_plural = "рекомендации покупателям"
        constraints = [
            models.UniqueConstraint(
                fields=["client", "customer"], name="customerrecommendation_client_customer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {len(self.products)}"
