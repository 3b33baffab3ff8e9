"""Fit BG/NBD and Gamma-Gamma on any transaction file and print the parameters.

Touches no model and no database: the file is read with pandas and the pure functions of
segments.clv and segments.model_check do the work.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from segments.clv import ModelFitError
from segments.model_check import clv_fit_report

UNIT_NAMES = {"day": gettext_lazy("дней"), "week": gettext_lazy("недель")}


def _calibration_end(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            _("--calibration-end: нужна дата ГГГГ-ММ-ДД, получено %(value)s")
            % {"value": repr(value)}
        ) from exc


def _read(path: Path, columns: list[str], delimiter: str) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, sep=delimiter, nrows=0).columns
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CommandError(
            _("не читается %(path)s: %(error)s") % {"path": path, "error": exc}
        ) from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise CommandError(
            _("в файле нет колонок %(missing)s; есть: %(present)s")
            % {"missing": ", ".join(missing), "present": ", ".join(map(str, header))}
        )
    # Customer ids stay text (leading zeros, mixed ids); dates are parsed below.
    frame = pd.read_csv(path, sep=delimiter, usecols=columns, dtype=str, keep_default_na=False)
    return frame


def _parse(frame: pd.DataFrame, date_col: str, amount_col: str | None) -> pd.DataFrame:
    try:
        try:
            with warnings.catch_warnings():
                # "Could not infer format": dateutil parses each row; that is fine here.
                warnings.simplefilter("ignore", UserWarning)
                frame[date_col] = pd.to_datetime(frame[date_col])
        except ValueError:
            # The format is inferred from the first row; a file mixing formats is parsed
            # row by row (slower).
            frame[date_col] = pd.to_datetime(frame[date_col], format="mixed")
    except (ValueError, TypeError) as exc:
        raise CommandError(
            _("колонка %(column)s: не разобрать даты (%(error)s)")
            % {"column": date_col, "error": exc}
        ) from exc
    if amount_col is not None:
        amounts = pd.to_numeric(frame[amount_col].str.replace(",", ".", regex=False), "coerce")
        bad = amounts.isna()
        if bad.any():
            first = int(bad.to_numpy().nonzero()[0][0])
            line = first + 2  # 1-based, after the header
            raise CommandError(
                _("колонка %(column)s: не число в строке %(line)s: %(value)s")
                % {"column": amount_col, "line": line, "value": repr(frame[amount_col].iloc[first])}
            )
        frame[amount_col] = amounts
    return frame


def _number(value: float, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(report: dict[str, Any], time_unit: str) -> str:
    """The report as aligned text for a terminal."""
    bg, gg, holdout = report["bgnbd"], report["gamma_gamma"], report["holdout"]
    lines = [
        _(
            "Покупателей: %(customers)s, с повторными покупками: %(repeat)s (время в единицах: "
            "%(unit)s)"
        )
        % {
            "customers": report["customers"],
            "repeat": report["repeat_customers"],
            "unit": UNIT_NAMES[time_unit],
        },
        "",
        "BG/NBD       "
        + "  ".join(f"{k}={_number(bg[k])}" for k in ("r", "alpha", "a", "b"))
        + f"  LL={_number(bg['ll'], 2)}",
    ]
    if gg is None:
        lines.append(_("Gamma-Gamma  — (нет --amount-col)"))
    else:
        lines.append(
            "Gamma-Gamma  "
            + "  ".join(f"{k}={_number(gg[k])}" for k in ("p", "q", "v"))
            + f"  LL={_number(gg['ll'], 2)}"
        )
    lines.append("")
    if holdout is None:
        lines.append(_("Контрольный период: нет покупок после --calibration-end"))
        return "\n".join(lines)
    lines += [
        _(
            "Контрольный период %(start)s … %(end)s (%(duration)s %(unit)s): повторных покупок "
            "факт %(actual).0f, прогноз %(predicted).1f, MAE на покупателя %(mae)s"
        )
        % {
            "start": holdout["calibration_end"],
            "end": holdout["observation_end"],
            "duration": _number(holdout["duration"], 2),
            "unit": UNIT_NAMES[time_unit],
            "actual": holdout["actual"],
            "predicted": holdout["predicted"],
            "mae": _number(holdout["mae"]),
        },
        "",
        f"{_('частота'):>8} {_('покупателей'):>12} {_('факт, ср.'):>10} "
        f"{_('прогноз, ср.'):>13} {'MAE':>8}",
    ]
    for row in holdout["by_frequency"]:
        lines.append(
            f"{row['frequency']:>8} {row['customers']:>12} {row['actual_mean']:>10.3f} "
            f"{row['predicted_mean']:>13.3f} {row['mae']:>8.3f}"
        )
    return "\n".join(lines)


class Command(BaseCommand):
    help = gettext_lazy(
        "Подобрать модели BG/NBD (покупки) и Gamma-Gamma (средний чек) по файлу транзакций "
        "и показать параметры и проверку на контрольном периоде. Несколько строк покупателя за "
        "день считаются одной покупкой (суммы складываются). --calibration-end включительно; "
        "давность и T считаются от первой покупки в выбранных единицах, T — до "
        "--calibration-end. Покупатели с первой покупкой позже --calibration-end в подбор не "
        "входят; покупки после неё образуют контрольный период. Базу данных не использует."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("transactions", help=_("CSV с заголовком: одна строка — одна покупка."))
        parser.add_argument("--customer-col", required=True, help=_("Колонка с id покупателя."))
        parser.add_argument("--date-col", required=True, help=_("Колонка с датой или временем."))
        parser.add_argument(
            "--amount-col", help=_("Колонка с суммой; без неё Gamma-Gamma не подбирается.")
        )
        parser.add_argument(
            "--calibration-end",
            required=True,
            help=_("Последний день периода подбора (ГГГГ-ММ-ДД), включительно."),
        )
        parser.add_argument(
            "--time-unit",
            choices=("day", "week"),
            default="week",
            help=_("Единица времени модели (по умолчанию week)."),
        )
        parser.add_argument(
            "--format", choices=("json", "table"), default="table", help=_("Вид вывода.")
        )
        parser.add_argument(
            "--delimiter", default=",", help=_("Разделитель CSV (по умолчанию запятая).")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["transactions"])
        if not path.is_file():
            raise CommandError(_("нет файла %(path)s") % {"path": path})
        calibration_end = _calibration_end(options["calibration_end"])
        customer_col, date_col = options["customer_col"], options["date_col"]
        amount_col = options["amount_col"]
        columns = list(dict.fromkeys(c for c in (customer_col, date_col, amount_col) if c))
        frame = _parse(_read(path, columns, options["delimiter"]), date_col, amount_col)
        empty_ids = frame[customer_col].str.strip() == ""
        if empty_ids.any():
            row = int(empty_ids.to_numpy().nonzero()[0][0]) + 2
            raise CommandError(
                _("колонка %(column)s: пустой id в строке %(row)s")
                % {"column": customer_col, "row": row}
            )
        try:
            report = clv_fit_report(
                frame,
                customer_col=customer_col,
                date_col=date_col,
                amount_col=amount_col,
                calibration_end=calibration_end,
                time_unit=options["time_unit"],
            )
        except (ModelFitError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(report, ensure_ascii=False))
        else:
            self.stdout.write(format_table(report, options["time_unit"]))
