"""Loopback stub servers of the ad platforms (Yandex Audiences, VK Ads, myTarget).

They check requests the way the real APIs do (auth schemes, multipart field names, file
formats, size limits, status transitions, token limits, quotas) so that the platform's HTTP
clients are tested against something stricter than a mock, and they run as a process for the
`make run` demo (`python -m tests.stubs --help`). The facts they follow are in
/work/shared/reference/ad-platforms.md; see the module docstrings of yandex_audiences.py and
vk_ads.py for what each stub checks. bitrix24.py is the Bitrix24 REST API as a portal's inbound
webhooks serve it (crm.contact.get, crm.deal.get), for the CRM webhook tests.

The owned channels' providers follow /work/shared/reference/channels-and-integrations.md:
unisender.py, sendsay.py (email), smsru.py, smsc.py (SMS), rustore.py, webpush.py (push), on
channels.py (the record of accepted messages); smtp_sink.py is a real SMTP server (aiosmtpd).
Their pytest fixtures are in fixtures.py.
"""

from tests.stubs.base import StubServer
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.yandex_audiences import YandexAudiencesStub

__all__ = ["StubServer", "VkAdsStub", "YandexAudiencesStub"]
