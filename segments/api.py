"""Segment API routes (DRF), added with the views."""

urlpatterns: list = []
