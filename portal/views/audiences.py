"""The client's audiences: what each ad cabinet holds, who was held back and why, the recent
syncs, and for an audience with a holdout its test: the split of the last sync (with the
sample-ratio check) and the uplift since the test started (``reports.audience_results``), with
its guards shown, never hidden (read-only: staff manage audiences in the admin)."""

from __future__ import annotations

from django.utils import timezone
from django.views.generic import ListView

from agency.arms import SRM_ALERT_P
from audiences.holdout import audience_holdout_check, holdout_running
from audiences.selectors import audiences_with_recent_runs
from reports.audience_results import audience_results

from ..mixins import ClientPortalMixin


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _percentages(results: dict) -> dict:
    """The rates and the uplift in percent (points for the difference), for the page."""
    uplift = results["uplift"]
    ci = uplift["absolute_ci"]
    relative_ci = uplift["relative_ci"]
    return {
        "rate_treatment": _pct(results["treatment"]["conversion_rate"]),
        "rate_holdout": _pct(results["holdout"]["conversion_rate"]),
        "absolute": _pct(uplift["absolute"]),
        "absolute_ci": ci and (_pct(ci[0]), _pct(ci[1])),
        "relative": _pct(uplift["relative"]),
        "relative_ci": relative_ci and (_pct(relative_ci[0]), _pct(relative_ci[1])),
    }


class AudienceListView(ClientPortalMixin, ListView):
    template_name = "portal/audiences.html"
    context_object_name = "audiences"

    def get_queryset(self):
        return audiences_with_recent_runs(client=self.client)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["running"] = any(
            run.is_active for audience in context["audiences"] for run in audience.recent_runs
        )
        tz = self.client.tzinfo
        today = timezone.localtime(timezone.now(), tz).date()
        for audience in context["audiences"]:
            audience.holdout = None
            if not holdout_running(audience):
                continue
            audience.client = self.client
            results = audience_results(
                audience=audience,
                date_from=timezone.localtime(audience.holdout_started_at, tz).date(),
                date_to=today,
            )
            srm = results["srm_p_value"]
            audience.holdout = {
                "check": audience_holdout_check(audience=audience),
                "results": results,
                "srm_alert": srm is not None and srm < SRM_ALERT_P,
                "shown": _percentages(results),
            }
        return context
