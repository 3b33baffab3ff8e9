from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from clients.api import CustomerViewSet, EventViewSet, OrderViewSet

router = DefaultRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("orders", OrderViewSet, basename="order")
router.register("events", EventViewSet, basename="event")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:home", permanent=False)),
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include(router.urls)),
    path("api/v1/webhooks/", include("clients.webhooks")),
    path("api/v1/", include("consent.api")),
    path("api/v1/", include("segments.api")),
    path("api/v1/", include("audiences.api")),
    path("api/v1/", include("campaigns.api")),
    path("api/v1/", include("reports.api")),
    path("consent/", include("consent.urls")),
    path("t/", include("campaigns.tracking")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI with its init script served apart (no inline script: the CSP allows none).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
]

# Under /api/ a failure outside a view (in middleware) is JSON too; see agency.middleware.
handler500 = "agency.views.server_error"
