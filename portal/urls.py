"""The portal's URLconf (namespace ``portal``): every page under ``<client_slug>/`` acts for
that client only (``portal.mixins.ClientPortalMixin``)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from .views.attribution import AttributionView
from .views.audiences import AudienceListView
from .views.campaigns import CampaignDetailView, CampaignListView
from .views.consent_ledger import ConsentCheckpointDigestView, ConsentLedgerView
from .views.customers import CustomerDetailView, CustomerListView
from .views.dashboard import DashboardView
from .views.home import PortalHomeView
from .views.imports import ImportJobErrorsView, ImportJobListView
from .views.kpis import KpiView

app_name = "portal"
urlpatterns = [
    path("", PortalHomeView.as_view(), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path("<slug:client_slug>/", DashboardView.as_view(), name="dashboard"),
    path("<slug:client_slug>/customers/", CustomerListView.as_view(), name="customers"),
    path("<slug:client_slug>/customers/<int:pk>/", CustomerDetailView.as_view(), name="customer"),
    path("<slug:client_slug>/imports/", ImportJobListView.as_view(), name="imports"),
    path(
        "<slug:client_slug>/imports/<int:pk>/errors.csv",
        ImportJobErrorsView.as_view(),
        name="import_errors",
    ),
    path("<slug:client_slug>/audiences/", AudienceListView.as_view(), name="audiences"),
    path("<slug:client_slug>/campaigns/", CampaignListView.as_view(), name="campaigns"),
    path("<slug:client_slug>/campaigns/<int:pk>/", CampaignDetailView.as_view(), name="campaign"),
    path("<slug:client_slug>/attribution/", AttributionView.as_view(), name="attribution"),
    path("<slug:client_slug>/kpis/", KpiView.as_view(), name="kpis"),
    path("<slug:client_slug>/consent-ledger/", ConsentLedgerView.as_view(), name="consent_ledger"),
    path(
        "<slug:client_slug>/consent-ledger/<int:pk>.json",
        ConsentCheckpointDigestView.as_view(),
        name="consent_checkpoint",
    ),
]
