"""Registries through which the apps above consent cover what they hold about a person.

consent sits below segments, audiences and campaigns and never imports them; each of those
apps registers here, in its ``AppConfig.ready()``, what it holds about a person:

- an **access-archive section** (:class:`ArchiveSection`): rows about the person added to the
  data-subject access archive (``<name>.csv`` and ``data.json["sections"][<name>]``),
  :func:`consent.requests.access_archive_build`;
- an **erasure step** (:class:`ErasureStep`): run inside the erasure transaction of
  :func:`consent.requests.customer_erase`, after consent has cleared the customer's own fields
  (so the step receives the person's identifiers as they were, in :class:`ErasureSubject`).
  Steps run in the reverse order of registration: apps register in ``INSTALLED_APPS`` order,
  lowest layer first, so a higher app's step still sees what its data was derived from
  (audiences read segment memberships before the segments step deletes them);
- a **withdrawal hook** (:class:`WithdrawalHook`): run in the transaction that appends a
  withdrawal to the consent ledger, for what must stop at once (art. 15 152-FZ; 38-FZ art. 18).

Every registration names the app, the models it covers (``"app_label.ModelName"``) and the
callable. ``tests/consent/test_hook_coverage.py`` walks every model and fails when one with a
customer key or identifier values is covered by neither a section nor a step (nor by consent
itself, :data:`consent.requests.CORE_ARCHIVE_MODELS` and ``CORE_ERASURE_MODELS``).

How an app registers (campaigns, for its messages, would do the same)::

    # campaigns/apps.py
    class CampaignsConfig(AppConfig):
        def ready(self) -> None:
            from . import personal_data

            personal_data.register()

    # campaigns/personal_data.py
    from consent.hooks import ArchiveSection, ErasureStep, WithdrawalHook, register

    def register() -> None:
        register(ArchiveSection(app="campaigns", name="messages", title="отправленные сообщения",
                                models=("campaigns.Message",), build=messages_section))
        register(ErasureStep(app="campaigns", name="messages", models=("campaigns.Message",),
                             run=messages_erase))
        register(WithdrawalHook(app="campaigns", name="cancel_queued",
                                run=queued_messages_cancel))

Registering again under the same app and name replaces the earlier registration (``ready()``
may run more than once, e.g. in tests).

Who registers what withdrawal hooks, and why not the others:

- campaigns (when it exists): cancel the person's queued messages of that purpose at once;
- audiences: a sync, within the hour, of every audience that may hold the person (one sync for
  the many withdrawals of that hour). Every sync builds its export set through the consent
  filter (``consent.selectors``), so the person leaves the audience at that sync; the removal
  is the diff against the snapshot the platform holds;
- segments: nothing. "opted_out" suppression segments read the ledger at their next refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clients.models import Customer

    from .models import DataSubjectRequest


@dataclass(frozen=True)
class ArchiveSection:
    """Rows about one person for the access archive.

    ``build(customer)`` returns the rows (dicts of JSON-able values; dates and Decimals are
    fine); ``title`` is the README line in Russian; ``models`` are the models whose rows it
    reports."""

    app: str
    name: str
    title: str
    models: tuple[str, ...]
    build: Callable[[Customer], list[dict[str, Any]]]


@dataclass(frozen=True)
class ErasureSubject:
    """The person being erased: the customer row (anonymised already when steps run) and the
    identifiers it held before consent cleared them, for steps that must find what was derived
    from them (identifier hashes sent to ad platforms, message addresses)."""

    customer: Customer
    email: str
    phone: str
    external_id: str
    at: datetime
    request: DataSubjectRequest | None = None


@dataclass(frozen=True)
class ErasureStep:
    """What an app erases of a person, inside the erasure transaction.

    ``run(subject)`` returns a sentence in Russian for the request's resolution (what was done,
    what happens next), or None when the app held nothing about the person."""

    app: str
    name: str
    models: tuple[str, ...]
    run: Callable[[ErasureSubject], str | None]


@dataclass(frozen=True)
class WithdrawalHook:
    """What must stop at once when a person withdraws a purpose: ``run(customer=, purpose=)``,
    inside the transaction that appends the withdrawal. A hook that can take a batch at once
    also gives ``run_many(customers=, purpose=)``: a batch of withdrawals (one client) then
    calls it once per purpose instead of ``run`` per person."""

    app: str
    name: str
    run: Callable[..., None]
    run_many: Callable[..., None] | None = None


ACCESS_ARCHIVE_SECTIONS: list[ArchiveSection] = []
ERASURE_STEPS: list[ErasureStep] = []
WITHDRAWAL_HOOKS: list[WithdrawalHook] = []

Registration = ArchiveSection | ErasureStep | WithdrawalHook


def _registry(item: Registration) -> list:
    if isinstance(item, ArchiveSection):
        return ACCESS_ARCHIVE_SECTIONS
    if isinstance(item, ErasureStep):
        return ERASURE_STEPS
    if isinstance(item, WithdrawalHook):
        return WITHDRAWAL_HOOKS
    raise TypeError(f"not a consent hook: {item!r}")


def register(item: Registration) -> Registration:
    """Add a section, step or hook; one with the same app and name is replaced in place (the
    order of first registration is kept: sections appear in the archive in that order)."""
    registry = _registry(item)
    if isinstance(item, ArchiveSection):
        taken = [s for s in registry if s.name == item.name and s.app != item.app]
        if taken:
            raise ValueError(f"archive section {item.name!r} is registered by {taken[0].app}")
    for index, existing in enumerate(registry):
        if (existing.app, existing.name) == (item.app, item.name):
            registry[index] = item
            return item
    registry.append(item)
    return item


def covered_models() -> dict[str, set[str]]:
    """Models covered by the registered sections and steps: ``{"archive": ..., "erasure":
    ...}`` as ``"app_label.ModelName"``."""
    return {
        "archive": {m for section in ACCESS_ARCHIVE_SECTIONS for m in section.models},
        "erasure": {m for step in ERASURE_STEPS for m in step.models},
    }


__all__ = [
    "ACCESS_ARCHIVE_SECTIONS",
    "ERASURE_STEPS",
    "WITHDRAWAL_HOOKS",
    "ArchiveSection",
    "ErasureStep",
    "ErasureSubject",
    "WithdrawalHook",
    "covered_models",
    "register",
]
