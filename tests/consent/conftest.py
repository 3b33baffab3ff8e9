"""Fixtures of the consent tests: published texts for every purpose of client A."""

from __future__ import annotations

import pytest

from clients.ingest import ingest_records
from clients.models import Customer
from consent.models import ConsentPurpose
from consent.services import consent_text_create, consent_text_publish

TEXT_PARTS = {
    "operator_name": "ООО «Альфа Маркет»",
    "operator_address": "125009, Москва, ул. Тверская, д. 1",
    "purpose_text": "Направление рекламных сообщений",
    "data_list": "имя, email, телефон",
    "processors": "ООО «Агентство» (обработка по поручению)",
    "actions": "сбор, запись, хранение, использование, удаление",
    "term": "до отзыва, но не более 3 лет",
    "withdrawal": "ссылкой в письме или письмом на privacy@alfa.ru",
}


def publish_texts(client):
    texts = {}
    for purpose in ConsentPurpose.objects.all():
        text = consent_text_create(
            client=client, purpose_code=purpose.code, title=purpose.name, **TEXT_PARTS
        )
        texts[purpose.code] = consent_text_publish(text=text)
    return texts


@pytest.fixture
def texts_a(client_a):
    return publish_texts(client_a)


@pytest.fixture
def customers_a(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {"external_id": f"p{i}", "email": f"p{i}@example.ru", "phone": f"+7916000000{i}"}
            for i in range(5)
        ],
    )
    return list(Customer.objects.for_client(client_a).order_by("external_id"))
