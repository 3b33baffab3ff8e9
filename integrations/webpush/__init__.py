"""Web push (RFC 8030/8291/8292) through pywebpush with VAPID keys."""

from .client import (
    PUSH_SERVICE_COUNTRIES,
    EndpointRefused,
    WebPushClient,
    check_endpoint,
    endpoint_country,
    is_local_test_endpoint,
)

__all__ = [
    "PUSH_SERVICE_COUNTRIES",
    "EndpointRefused",
    "WebPushClient",
    "check_endpoint",
    "endpoint_country",
    "is_local_test_endpoint",
]
