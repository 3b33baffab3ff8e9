"""Public consent pages: the cookie banner (script, endpoint, demo) and unsubscribe links."""

from django.urls import include, path

app_name = "consent"
urlpatterns = [
    path("", include("consent.banner")),
    path("", include("consent.unsubscribe")),
]
