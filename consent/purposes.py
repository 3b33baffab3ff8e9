"""The consent purpose codes, and which purpose each use of personal data needs: one place.

The ``ConsentPurpose`` rows are seeded with these codes by ``consent/migrations/0002`` (a
migration does not import app code, so it spells them out; a test checks that the two agree).
Code that asks for a consent names the purpose by these constants, never by a string literal.
"""

from __future__ import annotations

EMAIL_MARKETING = "email_marketing"
SMS_MARKETING = "sms_marketing"
PUSH_MARKETING = "push_marketing"
MESSENGER_MARKETING = "messenger_marketing"
AD_AUDIENCES = "ad_audiences"
ANALYTICS_COOKIES = "analytics_cookies"
AD_COOKIES = "ad_cookies"
PROFILING = "profiling"

PURPOSES = (
    EMAIL_MARKETING,
    SMS_MARKETING,
    PUSH_MARKETING,
    MESSENGER_MARKETING,
    AD_AUDIENCES,
    ANALYTICS_COOKIES,
    AD_COOKIES,
    PROFILING,
)

# The purpose whose consent a marketing message over a channel needs; an unsubscribe link in
# such a message withdraws it.
CHANNEL_PURPOSE = {
    "email": EMAIL_MARKETING,
    "sms": SMS_MARKETING,
    "push": PUSH_MARKETING,
    "messenger": MESSENGER_MARKETING,
}

# The purpose whose consent an export of a person to an ad platform (an audience) needs.
AUDIENCE_PURPOSE = AD_AUDIENCES

# What a withdrawal request withdraws: every marketing and profiling purpose (a stop_processing
# request: every purpose). Analytics cookies are not marketing; the banner governs them.
WITHDRAWAL_PURPOSES = (
    EMAIL_MARKETING,
    SMS_MARKETING,
    PUSH_MARKETING,
    MESSENGER_MARKETING,
    AD_AUDIENCES,
    AD_COOKIES,
    PROFILING,
)
