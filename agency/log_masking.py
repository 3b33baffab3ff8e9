"""Secrets that travel in URLs never reach a log line: one mask for every log that writes a
request's path (Django's development server ``django.server``, Django's ``django.request``
warnings, gunicorn's access log) and anything else that passes through the root handler.

What is masked:

- a CRM webhook's secret, the segment after the client in ``/webhooks/<crm>/<client>/<secret>/``
  (amoCRM cannot sign its webhooks nor send a header, so its secret rides in the path:
  ``clients.webhooks``);
- a ``secret=`` query parameter (the retired amoCRM URL form, refused with a 400 that names the
  new form, may still be called by a CRM that was not reconfigured).

Imports nothing from Django: gunicorn's logger class (``config.gunicorn``) uses it before
Django is set up.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_PATTERNS = (
    # /webhooks/amocrm/<client>/<secret>/ (and the same shape for any CRM)
    re.compile(r"(/webhooks/[^/?#\s\"']+/[^/?#\s\"']+/)[^/?#\s\"']+"),
    # ?secret=... / &secret=... / a bare query string starting with secret=
    re.compile(r"((?:^|[?&;])secret=)[^&#\s\"']*", re.IGNORECASE),
)


def mask_secrets(text: str) -> str:
    """``text`` with every secret above replaced by ``***``."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


class SecretMaskingFilter(logging.Filter):
    """A logging filter that rewrites a record's message with :func:`mask_secrets` (the
    record is formatted once here, so its arguments cannot bring the secret back)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: left for the handler to report
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
