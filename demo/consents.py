"""Demo consent data: published texts, a banner site and a believable consent history, so the
ledger, the banner demo and (later) consent-aware audiences have real numbers to show."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clients.models import Client, Customer
from consent import purposes
from consent.models import ConsentPurpose, ConsentRecord, ConsentSite, ConsentText
from consent.services import (
    consent_record_build,
    consent_records_save,
    consent_text_create,
    consent_text_publish,
    latest_published_text,
)

# Share of customers who granted each purpose, and of those who later withdrew.
GRANT_SHARE = {
    purposes.EMAIL_MARKETING: 0.72,
    purposes.SMS_MARKETING: 0.45,
    purposes.PUSH_MARKETING: 0.4,
    purposes.AD_AUDIENCES: 0.64,
    purposes.PROFILING: 0.8,
}
WITHDRAW_SHARE = 0.08


def _text_parts(client: Client, purpose: ConsentPurpose) -> dict[str, str]:
    processors = "ООО «Агентство CVM» (обработка по поручению оператора)"
    if purpose.code == purposes.AUDIENCE_PURPOSE:
        processors += "; ООО «Яндекс», ООО «ВК» (рекламные платформы: хешированные контакты)"
    return {
        "title": f"Согласие: {purpose.name}",
        "operator_name": client.legal_name or client.name,
        "operator_address": "Российская Федерация, г. Москва",
        "purpose_text": purpose.name,
        "data_list": "фамилия, имя, email, телефон, история заказов",
        "processors": processors,
        "actions": "сбор, запись, систематизация, хранение, уточнение, использование, удаление",
        "term": "до отзыва согласия, но не более 5 лет",
        "withdrawal": "по ссылке «отписаться» в сообщении или письмом оператору",
    }


def local_origins(base_url: str) -> list[str]:
    """The site's origin, and for a loopback address both spellings (127.0.0.1 and localhost)
    on the same port: the banner demo works whichever one the browser shows."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    origins = {origin}
    if parts.hostname in ("127.0.0.1", "localhost"):
        port = f":{parts.port}" if parts.port else ""
        origins |= {f"{parts.scheme}://{host}{port}" for host in ("127.0.0.1", "localhost")}
    return sorted(origins)


def demo_consents(*, client: Client, seed: int = 42) -> int:
    """Publish texts for every purpose, register the local banner site, and write a consent
    history for the client's customers (once: a client that already has records is left alone).
    Returns the number of records written."""
    with transaction.atomic():
        for purpose in ConsentPurpose.objects.all():
            if latest_published_text(client=client, purpose=purpose) is None:
                draft = consent_text_create(
                    client=client, purpose_code=purpose.code, **_text_parts(client, purpose)
                )
                consent_text_publish(text=draft, source="cli")
        origins = local_origins(settings.PUBLIC_BASE_URL)
        ConsentSite.objects.get_or_create(
            client=client, name=f"{client.name}: сайт", defaults={"allowed_origins": origins}
        )
        if ConsentRecord.objects.for_client(client).exists():
            return 0
        rng = np.random.default_rng([seed, client.pk])
        texts = {
            t.purpose.code: t
            for t in ConsentText.objects.for_client(client)
            .filter(status=ConsentText.Status.PUBLISHED)
            .select_related("purpose")
        }
        now = timezone.now()
        records = []
        for customer in Customer.objects.for_client(client).only("pk", "client_id", "first_seen"):
            for code, share in GRANT_SHARE.items():
                if rng.random() >= share:
                    continue
                granted_at = min(customer.first_seen + timedelta(minutes=5), now)
                records.append(
                    consent_record_build(
                        client=client,
                        customer=customer,
                        purpose_code=code,
                        action="granted",
                        source="web_form",
                        text=texts[code],
                        at=granted_at,
                    )
                )
                if rng.random() < WITHDRAW_SHARE:
                    span = max((now - granted_at).total_seconds(), 60)
                    records.append(
                        consent_record_build(
                            client=client,
                            customer=customer,
                            purpose_code=code,
                            action="withdrawn",
                            source="unsubscribe_link",
                            text=texts[code],  # the text withdrawn (else looked up per record)
                            at=granted_at + timedelta(seconds=float(rng.uniform(30, span))),
                        )
                    )
        consent_records_save(records)
        return len(records)
