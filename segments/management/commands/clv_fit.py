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
from django.core.management.base import BaseCommand, CommandError, CommandParser

from segments.clv import ModelFitError
from segments.model_check import clv_fit_report

UNIT_NAMES = {"day": "дней", "week": "недель"}


def _calibration_end(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--calibration-end: нужна дата ГГГГ-ММ-ДД, получено {value!r}") from exc


def _read(path: Path, columns: list[str], delimiter: str) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, sep=delimiter, nrows=0).columns
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CommandError(f"не читается {path}: {exc}") from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise CommandError(
            f"в файле нет колонок {', '.join(missing)}; есть: {', '.join(map(str, header))}"
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
        raise CommandError(f"колонка {date_col}: не разобрать даты ({exc})") from exc
    if amount_col is not None:
        amounts = pd.to_numeric(frame[amount_col].str.replace(",", ".", regex=False), "coerce")
        bad = amounts.isna()
        if bad.any():
            first = int(bad.to_numpy().nonzero()[0][0])
            line = first + 2  # 1-based, after the header
            raise CommandError(
                f"колонка {amount_col}: не число в строке {line}: {frame[amount_col].iloc[first]!r}"
            )
        frame[amount_col] = amounts
    return frame


def _number(value: float, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(report: dict[str, Any], time_unit: str) -> str:
    """The report as aligned text for a terminal."""
    bg, gg, holdout = report["bgnbd"], report["gamma_gamma"], report["holdout"]
    lines = [
        f"Покупателей: {report['customers']}, с повторными покупками: "
        f"{report['repeat_customers']} (время в единицах: {UNIT_NAMES[time_unit]})",
        "",
        "BG/NBD       "
        + "  ".join(f"{k}={_number(bg[k])}" for k in ("r", "alpha", "a", "b"))
        + f"  LL={_number(bg['ll'], 2)}",
    ]
    if gg is None:
        lines.append("Gamma-Gamma  — (нет --amount-col)")
    else:
        lines.append(
            "Gamma-Gamma  "
            + "  ".join(f"{k}={_number(gg[k])}" for k in ("p", "q", "v"))
            + f"  LL={_number(gg['ll'], 2)}"
        )
    lines.append("")
    if holdout is None:
        lines.append("Контрольный период: нет покупок после --calibration-end")
        return "\n".join(lines)
    lines += [
        f"Контрольный период {holdout['calibration_end']} … {holdout['observation_end']} "
        f"({_number(holdout['duration'], 2)} {UNIT_NAMES[time_unit]}): "
        f"повторных покупок факт {holdout['actual']:.0f}, прогноз {holdout['predicted']:.1f}, "
        f"MAE на покупателя {_number(holdout['mae'])}",
        "",
        f"{'частота':>8} {'покупателей':>12} {'факт, ср.':>10} {'прогноз, ср.':>13} {'MAE':>8}",
    ]
    for row in holdout["by_frequency"]:
        lines.append(
            f"{row['frequency']:>8} {row['customers']:>12} {row['actual_mean']:>10.3f} "
            f"{row['predicted_mean']:>13.3f} {row['mae']:>8.3f}"
        )
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Подобрать модели BG/NBD (покупки) и Gamma-Gamma (средний чек) по файлу транзакций "
        "и показать параметры и проверку на контрольном периоде. Несколько строк покупателя за "
        "день считаются одной покупкой (суммы складываются). --calibration-end включительно; "
        "давность и T считаются от первой покупки в выбранных единицах, T — до "
        "--calibration-end. Покупатели с первой покупкой позже --calibration-end в подбор не "
        "входят; покупки после неё образуют контрольный период. Базу данных не использует."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("transactions", help="CSV с заголовком: одна строка — одна покупка.")
        parser.add_argument("--customer-col", required=True, help="Колонка с id покупателя.")
        parser.add_argument("--date-col", required=True, help="Колонка с датой или временем.")
        parser.add_argument(
            "--amount-col", help="Колонка с суммой; без неё Gamma-Gamma не подбирается."
        )
        parser.add_argument(
            "--calibration-end",
            required=True,
            help="Последний день периода подбора (ГГГГ-ММ-ДД), включительно.",
        )
        parser.add_argument(
            "--time-unit",
            choices=("day", "week"),
            default="week",
            help="Единица времени модели (по умолчанию week).",
        )
        parser.add_argument(
            "--format", choices=("json", "table"), default="table", help="Вид вывода."
        )
        parser.add_argument(
            "--delimiter", default=",", help="Разделитель CSV (по умолчанию запятая)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["transactions"])
        if not path.is_file():
            raise CommandError(f"нет файла {path}")
        calibration_end = _calibration_end(options["calibration_end"])
        customer_col, date_col = options["customer_col"], options["date_col"]
        amount_col = options["amount_col"]
        columns = list(dict.fromkeys(c for c in (customer_col, date_col, amount_col) if c))
        frame = _parse(_read(path, columns, options["delimiter"]), date_col, amount_col)
        empty_ids = frame[customer_col].str.strip() == ""
        if empty_ids.any():
            row = int(empty_ids.to_numpy().nonzero()[0][0]) + 2
            raise CommandError(f"колонка {customer_col}: пустой id в строке {row}")
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
