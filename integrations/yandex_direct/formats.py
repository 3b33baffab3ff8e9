"""Yandex Direct report files: the TSV of the Reports service (column header line first, no
report header or summary; money in currency units with ``returnMoneyInMicros: false``)."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal, InvalidOperation

MICROS = Decimal(1_000_000)


class ReportFormatError(ValueError):
    pass


def _number(value: str) -> str:
    value = (value or "").strip()
    return "0" if value in ("", "--") else value


def report_rows(tsv: str, *, money_in_micros: bool = False) -> list[dict]:
    """Rows of a campaign performance report: ``{"day", "campaign_id", "campaign_name",
    "impressions", "clicks", "cost"}`` (cost a RUB ``Decimal``; micros divided when
    ``money_in_micros``)."""
    lines = [line for line in tsv.splitlines() if line.strip()]
    if not lines:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE)
    needed = {"Date", "CampaignId", "Impressions", "Clicks", "Cost"}
    missing = needed - set(reader.fieldnames or [])
    if missing:
        raise ReportFormatError(f"report columns missing: {', '.join(sorted(missing))}")
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            cost = Decimal(_number(row["Cost"]))
            if money_in_micros:
                cost = cost / MICROS
            rows.append(
                {
                    "day": date.fromisoformat(row["Date"].strip()),
                    "campaign_id": row["CampaignId"].strip(),
                    "campaign_name": (row.get("CampaignName") or "").strip(),
                    "impressions": int(_number(row["Impressions"])),
                    "clicks": int(_number(row["Clicks"])),
                    "cost": cost.quantize(Decimal("0.01")),
                }
            )
        except (InvalidOperation, ValueError, TypeError) as exc:
            raise ReportFormatError(f"report line {number}: {exc}") from exc
    return rows
