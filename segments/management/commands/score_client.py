"""Run the scoring pipeline of one client in the foreground, with a progress bar."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from tqdm import tqdm

from agency.commands import BaseCommand
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
        raise CommandError(
            _("дата в формате ГГГГ-ММ-ДД, не %(value)s") % {"value": repr(value)}
        ) from exc


class Command(BaseCommand):
    help = gettext_lazy(
        "Пересчитать все оценки покупателей клиента (RFM, жизненный цикл, CLV, отток) сейчас, "
        "в этом процессе, с индикатором хода; затем обновить сегменты клиента. Печатает этапы "
        "с временем, параметры моделей и ошибку прогноза на контрольном периоде. Код выхода не "
        "ноль, если запуск не удался (ошибка записана в запуск и видна в админке)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help=_("Код клиента (slug)."))
        parser.add_argument(
            "--as-of",
            type=_date,
            help=_("Дата расчёта ГГГГ-ММ-ДД (по умолчанию сегодня в часовом поясе клиента)."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(
                _("нет клиента с кодом %(slug)s") % {"slug": repr(options["client_slug"])}
            )
        try:
            # Requested like every other run (one at a time per client, audited), then run here.
            run = scoring_run_request(
                client=client, source="cli", as_of=options["as_of"], enqueue=False
            )
        except ScoringRunActive as exc:
            raise CommandError(
                _("скоринг клиента уже идёт (запуск %(run)s); дождитесь его окончания")
                % {"run": exc.run.pk}
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
                    _("запуск %(run)s не удался: %(error)s")
                    % {"run": run.pk, "error": f"{type(exc).__name__}: {exc}"}
                ) from exc
        if run.status != ScoringRun.Status.SUCCEEDED:
            raise CommandError(
                _("запуск %(run)s: %(status)s")
                % {"run": run.pk, "status": run.get_status_display()}
            )
        self._report(run)
        tasks.memberships_refresh_after(run)
        self.stdout.write(_("Сегменты обновлены."))

    def _report(self, run: ScoringRun) -> None:
        w = self.stdout.write
        w(
            _(
                "Запуск %(run)s · %(client)s · на %(as_of)s: %(status)s, покупателей "
                "%(customers)s, заказов %(orders)s, %(seconds).2f с"
            )
            % {
                "run": run.pk,
                "client": run.client.slug,
                "as_of": run.as_of or "—",
                "status": run.get_status_display(),
                "customers": run.customers,
                "orders": run.orders,
                "seconds": run.duration_seconds or 0,
            }
        )
        if run.stage_seconds:
            w(_("Этапы, с:"))
            for stage, seconds in run.stage_seconds.items():
                w(f"  {stage:<10} {seconds:8.3f}")
        for model, values in (run.parameters or {}).items():
            shown = ", ".join(
                f"{name}={value:.6g}" if isinstance(value, float) else f"{name}={value}"
                for name, value in values.items()
            )
            w(_("Параметры %(model)s: %(values)s") % {"model": model, "values": shown})
        holdout = run.holdout or {}
        if "skipped" in holdout:
            w(
                _("Проверка на контрольном периоде: не проводилась (%(reason)s)")
                % {"reason": holdout["skipped"]}
            )
        elif holdout:
            w(
                _(
                    "Проверка на контрольном периоде (%(days)s дн. после %(end)s): MAE %(mae)s, "
                    "повторных покупок прогноз %(predicted)s, факт %(actual)s"
                )
                % {
                    "days": holdout.get("holdout_days"),
                    "end": holdout.get("calibration_end"),
                    "mae": _num(holdout.get("mae"), 4),
                    "predicted": _num(holdout.get("predicted"), 1),
                    "actual": _num(holdout.get("actual"), 1),
                }
            )
            for bucket in holdout.get("by_frequency", []):
                w(
                    _(
                        "  частота %(frequency)3s: покупателей %(customers)8s, прогноз "
                        "%(predicted)s, факт %(actual)s, MAE %(mae)s"
                    )
                    % {
                        "frequency": bucket["frequency"],
                        "customers": bucket["customers"],
                        "predicted": _num(bucket["predicted_mean"], 3),
                        "actual": _num(bucket["actual_mean"], 3),
                        "mae": _num(bucket["mae"], 3),
                    }
                )
        if run.error:
            w(self.style.ERROR(_("Ошибка: %(error)s") % {"error": run.error}))
