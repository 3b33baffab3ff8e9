"""URLs of this part of the reports API (filled by its module)."""

urlpatterns: list = []
