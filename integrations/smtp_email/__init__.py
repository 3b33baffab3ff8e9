"""Email over the deployment's SMTP relay (Django's email backend, ``EMAIL_URL``)."""

from .client import SmtpEmailClient, message_id

__all__ = ["SmtpEmailClient", "message_id"]
