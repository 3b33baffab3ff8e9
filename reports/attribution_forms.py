"""The period and options of an attribution report as a form, and the report laid out as a
table and a chart: shared by the admin's page and the portal's (the API validates the same
fields with its serializer)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .attribution import MODELS

MAX_DAYS = 3 * 366
#: Dates a report may ask for (a lookback before year 1 would not even be a date).
MIN_DATE, MAX_DATE = dt.date(2000, 1, 1), dt.date(2100, 12, 31)
OUT_OF_RANGE = _("Дата вне диапазона 2000–2100 годов.")
MODEL_LABELS = {
    "last_click": _("последний клик"),
    "first_click": _("первый клик"),
    "linear": _("линейная"),
    "time_decay": _("с затуханием"),
    "position_based": _("по позиции 40/20/40"),
}
BY_CHOICES = (("channel", _("по каналам")), ("campaign", _("по кампаниям")))


class AttributionPeriodForm(forms.Form):
    date_from = forms.DateField(
        label=_("начало периода"), widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("конец периода"), widget=forms.DateInput(attrs={"type": "date"})
    )
    by = forms.ChoiceField(label=_("разрез"), choices=BY_CHOICES, required=False)
    half_life_days = forms.IntegerField(
        label=_("полураспад, дней"),
        min_value=1,
        max_value=365,
        required=False,
        help_text=_("Для модели time decay; пусто — из настроек отчётов клиента."),
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        for name, value in (("date_from", start), ("date_to", end)):
            if value and not MIN_DATE <= value <= MAX_DATE:
                self.add_error(name, OUT_OF_RANGE)
                return data
        if start and end:
            if start > end:
                self.add_error("date_to", _("Конец периода раньше его начала."))
            elif (end - start).days >= MAX_DAYS:
                self.add_error("date_to", _("Период длиннее трёх лет: сократите его."))
        data["by"] = data.get("by") or "channel"
        return data


def default_period(today: dt.date) -> dict[str, str]:
    """The last 30 days up to ``today`` (the client's today), as the form's initial data."""
    return {
        "date_from": (today - dt.timedelta(days=29)).isoformat(),
        "date_to": today.isoformat(),
        "by": "channel",
    }


def attribution_table(report: dict, by: str) -> dict[str, Any]:
    """``report`` (``reports.touchpoints.attribution_report``) as the pages show it: one row per
    channel or campaign with each model's orders and revenue in :data:`MODELS` order, the
    CLV-weighted rows, and the grouped bar chart's series (revenue per model)."""
    source = report[f"by_{by}"]
    return {
        "models": [(model, MODEL_LABELS[model]) for model in MODELS],
        "rows": [
            {
                "key": row["key"],
                "label": row["label"],
                "cells": [row["models"][model] for model in MODELS],
            }
            for row in source
        ],
        "clv": report["clv"][f"by_{by}"],
        "chart": {
            "labels": [str(row["label"]) for row in source],
            "series": [
                {
                    "model": model,
                    "label": str(MODEL_LABELS[model]),
                    "data": [float(row["models"][model]["revenue"]) for row in source],
                }
                for model in MODELS
            ],
        },
    }
