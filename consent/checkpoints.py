"""Checkpoints of the consent ledger: its chain anchored outside its own table.

The hash chain shows an edited record, or one missing in the middle; it cannot show a ledger
cut short (the newest records deleted with the trigger disabled, or the whole table truncated),
because what is left is still a valid chain. So once a day a checkpoint of every client's chain
(how many records, the newest record's id and hash) is written to the audit log, which the
ledger's writer cannot rewrite (append-only; on PostgreSQL it refuses UPDATE, DELETE and
TRUNCATE), and signed with HMAC-SHA256 under ``LEDGER_SIGNING_KEY``, a key that lives in the
application's environment, not in the database: someone who can write to the database alone
cannot add a checkpoint that verifies. A client downloads the signed digest of each checkpoint
from the portal and can hand it back to ``verify_consent_log --digest``.

The checkpoint writer is ``consent.services.consent_checkpoint_write``; this module holds the
checkpoint itself, its signature and its reading.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from agency.errors import ServiceError
from agency.models import AuditLogEntry

CHECKPOINT_ACTION = "consent_checkpoint"
DIGEST_KIND = "consent-ledger-checkpoint"
ALGORITHM = "HMAC-SHA256"
_SALT = "consent.checkpoints"


def _signing_keys() -> list[str]:
    """The key that signs (first) and the ones still accepted when verifying (after a rotation).
    Without ``LEDGER_SIGNING_KEY`` the key is derived from ``SECRET_KEY``."""
    primary = settings.LEDGER_SIGNING_KEY or settings.SECRET_KEY
    return [primary, *settings.LEDGER_SIGNING_KEY_FALLBACKS]


def _sign(payload: dict[str, Any], key: str) -> str:
    message = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return salted_hmac(_SALT, message, secret=key, algorithm="sha256").hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """One client's ledger at one moment: ``count`` records, the newest ``head_id`` with hash
    ``head_hash``. ``date`` is the day in the client's time zone, ``at`` the moment in UTC."""

    client_id: int
    client: str
    date: str
    at: str
    count: int
    head_id: int
    head_hash: str
    signature: str = ""
    entry_id: int | None = None  # the audit log entry that holds it

    def payload(self) -> dict[str, Any]:
        """What the signature covers."""
        data = asdict(self)
        del data["signature"], data["entry_id"]
        return {"kind": DIGEST_KIND, **data}

    def signed(self) -> Checkpoint:
        return replace(self, signature=_sign(self.payload(), _signing_keys()[0]))

    def signature_ok(self) -> bool:
        return any(
            hmac.compare_digest(self.signature, _sign(self.payload(), key))
            for key in _signing_keys()
        )

    def as_digest(self) -> dict[str, Any]:
        """The JSON a client downloads and keeps."""
        return {**self.payload(), "algorithm": ALGORITHM, "signature": self.signature}

    @classmethod
    def from_digest(cls, data: Any) -> Checkpoint:
        """A checkpoint from a downloaded digest; refused when it is not one (the signature is
        checked by the verifier, which names a bad one)."""
        fields = ("client_id", "client", "date", "at", "count", "head_id", "head_hash")
        if (
            not isinstance(data, dict)
            or data.get("kind") != DIGEST_KIND
            or data.get("algorithm") != ALGORITHM
            or any(name not in data for name in fields)
            or not isinstance(data.get("signature"), str)
            or not all(isinstance(data[name], int) for name in ("client_id", "count", "head_id"))
            or not all(isinstance(data[name], str) for name in ("client", "date", "at"))
        ):
            raise ServiceError(
                "invalid_digest", _("Это не дайджест контрольной точки журнала согласий.")
            )
        return cls(**{name: data[name] for name in fields}, signature=data["signature"])

    @classmethod
    def from_entry(cls, entry: AuditLogEntry) -> Checkpoint:
        details = entry.details
        return cls(
            client_id=details.get("client_id"),
            client=details.get("client", ""),
            date=details.get("date", ""),
            at=details.get("at", ""),
            count=details.get("count", 0),
            head_id=details.get("head_id", 0),
            head_hash=details.get("head_hash", ""),
            signature=details.get("signature", ""),
            entry_id=entry.pk,
        )


def consent_checkpoint_entries(*, client):
    """The audit log entries holding a client's checkpoints, oldest first."""
    return AuditLogEntry.objects.filter(client_id=client.pk, action=CHECKPOINT_ACTION).order_by(
        "id"
    )


def consent_checkpoints(*, client) -> list[Checkpoint]:
    """Every checkpoint of a client's ledger, oldest first."""
    return [Checkpoint.from_entry(entry) for entry in consent_checkpoint_entries(client=client)]
