"""Routes filled in by this module's views."""

urlpatterns: list = []
