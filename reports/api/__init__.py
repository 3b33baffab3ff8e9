"""The reports API: one module per part, each with its own ``urlpatterns``."""

from django.urls import include, path

urlpatterns = [
    path("", include("reports.api.results")),
    path("", include("reports.api.design")),
    path("", include("reports.api.attribution")),
    path("", include("reports.api.spend")),
    path("", include("reports.api.kpis")),
    path("", include("reports.api.feedback")),
    path("", include("reports.api.metrica")),
    path("", include("reports.api.audience_results")),
]
