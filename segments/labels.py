"""What people read for the codes of ``segments.rfm.SEGMENTS`` and ``segments.lifecycle.STAGES``.

The codes (English names: "Champions", "Win-back") are what is stored and what the API and
segment definitions use; these labels are what pages show, in the viewer's language.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from . import lifecycle, rfm

RFM_SEGMENT_LABELS = {
    rfm.CHAMPIONS: _("Чемпионы"),
    rfm.LOYAL: _("Лояльные"),
    rfm.POTENTIAL_LOYALIST: _("Потенциально лояльные"),
    rfm.NEW: _("Новые"),
    rfm.PROMISING: _("Перспективные"),
    rfm.NEED_ATTENTION: _("Требуют внимания"),
    rfm.ABOUT_TO_SLEEP: _("Засыпающие"),
    rfm.AT_RISK: _("Под угрозой ухода"),
    rfm.CANT_LOSE_THEM: _("Нельзя потерять"),
    rfm.HIBERNATING: _("Спящие"),
    rfm.LOST: _("Потерянные"),
}

LIFECYCLE_STAGE_LABELS = {
    lifecycle.AWARENESS: _("Знакомство"),
    lifecycle.ACQUISITION: _("Привлечение"),
    lifecycle.ONBOARDING: _("Первые покупки"),
    lifecycle.RETENTION: _("Удержание"),
    lifecycle.EXPANSION: _("Рост"),
    lifecycle.WIN_BACK: _("Возврат"),
}


def rfm_segment_label(code: str) -> str:
    """The RFM segment's name in the active language (an unknown code as it is)."""
    return str(RFM_SEGMENT_LABELS.get(code, code))


def lifecycle_stage_label(code: str) -> str:
    """The lifecycle stage's name in the active language (an unknown code as it is)."""
    return str(LIFECYCLE_STAGE_LABELS.get(code, code))
