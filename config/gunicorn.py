"""gunicorn settings for production: ``gunicorn -c config/gunicorn.py config.wsgi`` (add
``--bind``, ``--workers`` and the rest on the command line or in GUNICORN_CMD_ARGS).

The access log masks secrets that travel in URLs (a CRM webhook's secret in its path, a
``secret=`` query parameter) with ``agency.log_masking``, as Django's own request logs do
(``LOGGING`` in config/settings.py).
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from agency.log_masking import mask_secrets


class SecretMaskingLogger(Logger):
    """gunicorn's logger whose access-log fields (request line, path, query, referrer,
    headers, environ) have their secrets masked, whatever ``access_log_format`` says."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: mask_secrets(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


logger_class = "config.gunicorn.SecretMaskingLogger"
