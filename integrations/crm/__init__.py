"""Shared parsing of CRM webhook bodies (Bitrix24, amoCRM)."""
