"""The base of the project's management commands: their ``help`` in the site's language.

Commands speak the site's language (``LANGUAGE_CODE``): their help and output go through
gettext. ``help`` is a class attribute, so it is lazy (``gettext_lazy``), and argparse needs it
as text: :class:`BaseCommand` reads it when the parser is built."""

from __future__ import annotations

from typing import Any

from django.core.management import base


class BaseCommand(base.BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> base.CommandParser:
        self.help = str(self.help)  # a lazy help, read in the active language
        return super().create_parser(prog_name, subcommand, **kwargs)
