"""SMS.ru (https://sms.ru/): SMS."""

from .client import DEFAULT_BASE_URL, SmsRuClient, base_url, phone_digits, smsru_error

__all__ = ["DEFAULT_BASE_URL", "SmsRuClient", "base_url", "phone_digits", "smsru_error"]
