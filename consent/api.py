"""Consent API (DRF): routes added with the views."""

urlpatterns: list = []
