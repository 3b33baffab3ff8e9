"""People an audience leaves out because a higher app says so, through a registry this package
owns (audiences never imports the apps above it).

campaigns registers one: people currently in a trigger chain that excludes its members from
this audience (a win-back chain, so the client does not pay for ads to people being won back by
email). Each provider gives SQL of a relation ``(customer_id)`` for one audience, or None when
it excludes nobody; :func:`exclusions_sql` unions them. The export set treats them as suppressed
(``audiences.snapshots``), counted in the run's "suppressed" bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Audience

ExclusionSql = Callable[["Audience"], tuple[str, list] | None]

EXCLUSIONS: dict[str, ExclusionSql] = {}


def exclusion_register(name: str, provider: ExclusionSql) -> None:
    """Add (or replace, ``ready()`` may run twice) an exclusion provider."""
    EXCLUSIONS[name] = provider


def exclusions_sql(audience: Audience) -> tuple[str, list] | None:
    """The union of every provider's relation for ``audience``, or None."""
    parts = [sql for provider in EXCLUSIONS.values() if (sql := provider(audience)) is not None]
    if not parts:
        return None
    return (
        " UNION ".join(
            f"SELECT customer_id FROM ({sql}) x{i}"  # noqa: S608 - providers give SQL
            for i, (sql, _p) in enumerate(parts)
        ),
        [param for _sql, params in parts for param in params],
    )
