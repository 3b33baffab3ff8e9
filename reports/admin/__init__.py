"""Admin of the reports app, one module per part."""

from . import attribution, design, feedback, kpis, metrica, settings, spend  # noqa: F401
