"""Run the scoring pipeline of one client in the foreground, with a progress bar."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from clients.models import Client
from segments import tasks
from segments.models import ScoringRun
from segments.services import ScoringRunActive, scoring_run_execute, scoring_run_request


def _num(value: Any, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"дата в формате ГГГГ-ММ-ДД, не {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Пересчитать все оценки покупателей клиента (RFM, жизненный цикл, CLV, отток) сейчас, "
        "в этом процессе, с индикатором хода; затем обновить сегменты клиента. Печатает этапы "
        "с временем, параметры моделей и ошибку прогноза на контрольном периоде. Код выхода не "
        "ноль, если запуск не удался (ошибка записана в запуск и видна в админке)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help="Код клиента (slug).")
        parser.add_argument(
            "--as-of",
            type=_date,
            help="Дата расчёта ГГГГ-ММ-ДД (по умолчанию сегодня в часовом поясе клиента).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(f"нет клиента с кодом {options['client_slug']!r}")
        try:
            # Requested like every other run (one at a time per client, audited), then run here.
            run = scoring_run_request(
                client=client, source="cli", as_of=options["as_of"], enqueue=False
            )
        except ScoringRunActive as exc:
            raise CommandError(
                f"скоринг клиента уже идёт (запуск {exc.run.pk}); дождитесь его окончания"
            ) from exc
        with tqdm(total=100, unit="%", file=sys.stderr, desc=client.slug) as bar:

            def on_progress(percent: int, stage: str) -> None:
                bar.set_postfix_str(stage, refresh=False)
                bar.update(max(percent - bar.n, 0))

            try:
                run = scoring_run_execute(run=run, as_of=options["as_of"], on_progress=on_progress)
            except Exception as exc:
                run.refresh_from_db()
                self._report(run)
                raise CommandError(
                    f"запуск {run.pk} не удался: {type(exc).__name__}: {exc}"
                ) from exc
        if run.status != ScoringRun.Status.SUCCEEDED:
            raise CommandError(f"запуск {run.pk}: {run.get_status_display()}")
        self._report(run)
        tasks.memberships_refresh_after(run)
        self.stdout.write("Сегменты обновлены.")

    def _report(self, run: ScoringRun) -> None:
        w = self.stdout.write
        w(
            f"Запуск {run.pk} · {run.client.slug} · на {run.as_of or '—'}: "
            f"{run.get_status_display()}, покупателей {run.customers}, заказов {run.orders}, "
            f"{run.duration_seconds or 0:.2f} с"
        )
        if run.stage_seconds:
            w("Этапы, с:")
            for stage, seconds in run.stage_seconds.items():
                w(f"  {stage:<10} {seconds:8.3f}")
        for model, values in (run.parameters or {}).items():
            shown = ", ".join(
                f"{name}={value:.6g}" if isinstance(value, float) else f"{name}={value}"
                for name, value in values.items()
            )
            w(f"Параметры {model}: {shown}")
        holdout = run.holdout or {}
        if "skipped" in holdout:
            w(f"Проверка на контрольном периоде: не проводилась ({holdout['skipped']})")
        elif holdout:
            w(
                f"Проверка на контрольном периоде ({holdout.get('holdout_days')} дн. после "
                f"{holdout.get('calibration_end')}): MAE {_num(holdout.get('mae'), 4)}, повторных "
                f"покупок прогноз {_num(holdout.get('predicted'), 1)}, "
                f"факт {_num(holdout.get('actual'), 1)}"
            )
            for bucket in holdout.get("by_frequency", []):
                w(
                    f"  частота {bucket['frequency']:>3}: покупателей {bucket['customers']:>8}, "
                    f"прогноз {_num(bucket['predicted_mean'], 3)}, "
                    f"факт {_num(bucket['actual_mean'], 3)}, MAE {_num(bucket['mae'], 3)}"
                )
        if run.error:
            w(self.style.ERROR(f"Ошибка: {run.error}"))
