"""Provider HTTP clients and formats, one package per provider.

Each knows its provider's API (auth, retries, error bodies, file formats) and no domain model:
the caller (audiences, campaigns, reports) owns what is sent and why. Base URLs come from the
environment (``<PROVIDER>_BASE_URL``), defaulting to the official host.
"""
