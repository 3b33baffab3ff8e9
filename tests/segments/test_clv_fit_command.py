"""`manage.py clv_fit`: a small hand-made CSV, the CDNOW transactions, errors, no database.

These tests do not request the ``db`` fixture, so pytest-django fails any of them that touches
the database.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]

SMALL_CSV = """\
client,day,total
c1,2024-01-05,100
c1,2024-01-05,20
c1,2024-02-10,50
c1,2024-03-20,70
c1,2024-04-10,40
c2,2024-01-10,30
c2,2024-03-01,30
c2,2024-04-02,30
c2,2024-04-02,10
c3,2024-02-01,200
c4,2024-03-15,15
c4,2024-03-31,25
c5,2024-04-05,80
c6,2024-01-20,60
c6,2024-04-28,60
"""
# By hand, calibration to 2024-03-31 inclusive: c5 starts after it and is left out, so five
# customers; c1 (2 repeat days), c2 (1) and c4 (1, on the last calibration day) are repeat
# customers. Holdout to 2024-04-28 (the last day in the file), 28 days = 4 weeks: one repeat
# purchase day each for c1, c2 (two rows on 04-02) and c6.


@pytest.fixture
def small_csv(tmp_path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text(SMALL_CSV, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory) -> Path:
    raw = pd.read_csv(
        DATA / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "quantity", "amount"],
        dtype={"date": str},
    )
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d").dt.strftime("%Y-%m-%d")
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    raw[["customer_id", "date", "amount"]].to_csv(path, index=False)
    return path


def _run(*args: str) -> str:
    out = StringIO()
    call_command("clv_fit", *args, stdout=out)
    return out.getvalue()


def _json(*args: str) -> dict:
    return json.loads(_run(*args, "--format", "json"))


SMALL_ARGS = ("--customer-col", "client", "--date-col", "day", "--calibration-end", "2024-03-31")


def test_small_csv_json(small_csv):
    report = _json(str(small_csv), *SMALL_ARGS, "--amount-col", "total")
    assert set(report) == {"bgnbd", "gamma_gamma", "customers", "repeat_customers", "holdout"}
    assert set(report["bgnbd"]) == {"r", "alpha", "a", "b", "ll"}
    assert set(report["gamma_gamma"]) == {"p", "q", "v", "ll"}
    assert report["customers"] == 5
    assert report["repeat_customers"] == 3
    for value in (*report["bgnbd"].values(), *report["gamma_gamma"].values()):
        assert math.isfinite(value)
    holdout = report["holdout"]
    assert holdout["calibration_end"] == "2024-03-31"
    assert holdout["observation_end"] == "2024-04-28"
    assert holdout["duration"] == 4.0
    assert holdout["customers"] == 5
    assert holdout["actual"] == 3.0
    buckets = {row["frequency"]: row for row in holdout["by_frequency"]}
    assert {k: v["customers"] for k, v in buckets.items()} == {"0": 2, "1": 2, "2": 1}
    assert buckets["0"]["actual_mean"] == 0.5  # c3 none, c6 one
    assert buckets["1"]["actual_mean"] == 0.5  # c2 one, c4 none
    assert buckets["2"]["actual_mean"] == 1.0  # c1


def test_small_csv_table(small_csv):
    text = _run(str(small_csv), *SMALL_ARGS, "--amount-col", "total", "--time-unit", "day")
    assert "Покупателей: 5, с повторными покупками: 3" in text
    assert "BG/NBD       r=" in text
    assert "Gamma-Gamma  p=" in text
    assert "2024-03-31 … 2024-04-28 (28.00 дней)" in text
    assert "факт 3" in text


def test_without_amounts_and_without_holdout(small_csv, tmp_path):
    report = _json(str(small_csv), *SMALL_ARGS)
    assert report["gamma_gamma"] is None
    calibration_only = _json(
        str(small_csv), *SMALL_ARGS[:4], "--calibration-end", "2024-04-30", "--amount-col", "total"
    )
    assert calibration_only["holdout"] is None
    assert calibration_only["customers"] == 6
    assert "нет покупок после" in _run(
        str(small_csv), *SMALL_ARGS[:4], "--calibration-end", "2024-04-30"
    )


def test_cdnow_reproduces_the_published_parameters(cdnow_csv):
    report = _json(
        str(cdnow_csv),
        "--customer-col", "customer_id", "--date-col", "date", "--amount-col", "amount",
        "--calibration-end", "1997-09-30", "--time-unit", "week",
    )  # fmt: skip
    assert report["customers"] == 2357
    assert report["repeat_customers"] == 946
    bg, gg = report["bgnbd"], report["gamma_gamma"]
    # Fader, Hardie & Lee (2005) and Fader & Hardie (2013): see test_clv.py.
    assert bg["r"] == pytest.approx(0.243, abs=1e-3)
    assert bg["alpha"] == pytest.approx(4.414, abs=1e-3)
    assert bg["a"] == pytest.approx(0.793, abs=1e-3)
    assert bg["b"] == pytest.approx(2.426, abs=1e-3)
    assert bg["ll"] == pytest.approx(-9582.4, abs=0.1)
    assert gg["p"] == pytest.approx(6.25, abs=0.01)
    assert gg["q"] == pytest.approx(3.74, abs=0.01)
    assert gg["v"] == pytest.approx(15.44, abs=0.01)
    holdout = report["holdout"]
    assert holdout["observation_end"] == "1998-06-30"
    assert holdout["duration"] == 39.0
    assert holdout["actual"] == 1882.0  # repeat purchase days in weeks 40-78
    assert holdout["predicted"] == pytest.approx(1653.4, abs=0.5)
    assert [row["frequency"] for row in holdout["by_frequency"]] == [
        "0", "1", "2", "3", "4", "5", "6", "7+",
    ]  # fmt: skip
    assert sum(row["customers"] for row in holdout["by_frequency"]) == 2357


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--customer-col", "nope", "--date-col", "day", "--calibration-end", "2024-03-31"),
            "nope",
        ),
        (
            ("--customer-col", "client", "--date-col", "day", "--calibration-end", "31.03.2024"),
            "ГГГГ",
        ),
        (
            ("--customer-col", "client", "--date-col", "total", "--calibration-end", "2024-03-31"),
            "даты",
        ),
        (
            ("--customer-col", "client", "--date-col", "day", "--calibration-end", "2023-12-31"),
            "no customers",
        ),
    ],
)
def test_errors(small_csv, args, message):
    with pytest.raises(CommandError, match=message):
        _run(str(small_csv), *args)


def test_bad_amount_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("c,d,a\n1,2024-01-01,10\n1,2024-01-05,ten\n", encoding="utf-8")
    with pytest.raises(CommandError, match="строке 3"):
        _run(str(path), "--customer-col", "c", "--date-col", "d", "--amount-col", "a",
             "--calibration-end", "2024-01-31")  # fmt: skip


def test_missing_file():
    with pytest.raises(CommandError, match="нет файла"):
        _run("/nonexistent.csv", *SMALL_ARGS)


def test_runs_with_an_unreachable_database(small_csv):
    """The command needs no database: point DATABASE_URL at a closed port."""
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": "postgres://nobody:nothing@127.0.0.1:9/none",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "clv_fit", str(small_csv), *SMALL_ARGS, "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["customers"] == 5
