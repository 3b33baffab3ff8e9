"""Bitrix24: webhook payload formats (formats.py)."""
