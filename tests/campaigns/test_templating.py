"""The template sandbox: only whitelisted variables, no file, library or tag that reaches out;
email bodies escaped, SMS and push plain; links wrapped for click tracking except unsubscribe."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agency.errors import ServiceError
from campaigns.templating import (
    SAMPLE_VARIABLES,
    VARIABLES,
    render_message,
    sms_segments,
    template_variables_check,
)

from .conftest import EMAIL_BODY


def refusal(subject: str = "", body: str = "") -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        template_variables_check(subject, body)
    return caught.value


def test_the_whitelist():
    assert set(VARIABLES) == {
        "first_name",
        "last_name",
        "recommendations",
        "offer_code",
        "unsubscribe_url",
        "client_name",
    }


@pytest.mark.parametrize(
    "source",
    [
        "{{ first_name }} {{ last_name|upper }} {{ client_name }} {{ offer_code }}",
        '<a href="{{ unsubscribe_url }}">x</a>',
        "{% for item in recommendations %}{{ forloop.counter }}. {{ item.name }} "
        "{{ item.price|floatformat:0 }} {{ item.id }}{% empty %}нет{% endfor %}",
        "{% if recommendations|length > 1 and first_name %}{{ recommendations.0.name }}{% endif %}",
        "{% with top=recommendations|first %}{{ top.name }}{% endwith %}",
        "{{ first_name|default:'друг' }} {% now 'Y' %}",
    ],
)
def test_whitelisted_templates_pass(source):
    template_variables_check(source, source)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("Привет, {{ name }}!", "name"),
        ("{{ customer.email }}", "customer"),
        ("{% if secret %}x{% endif %}", "secret"),
        ("{% for x in orders %}{{ x }}{% endfor %}", "orders"),
        ("{{ first_name|default:password }}", "password"),
        ("{% for item in recommendations %}{{ item.cost }}{% endfor %}", "item.cost"),
        ("{% for item in recommendations %}{% endfor %}{{ item.name }}", "item"),
        ("{{ first_name.upper }}", "first_name.upper"),  # attribute look-ups on strings
        ("{{ offer_code.0 }}", "offer_code.0"),
        ("{{ recommendations.count }}", "recommendations.count"),
        ("{{ forloop.counter }}", "forloop"),  # only inside a loop
    ],
)
def test_unknown_variables_are_refused_by_name(source, name):
    error = refusal(body=source)
    assert (error.code, error.field, error.extra["variable"]) == (
        "template_unknown_variable",
        "body",
        name,
    )
    assert f"«{name}»" in error.message
    assert "Неизвестная переменная" in error.message


def test_the_subject_is_checked_too():
    error = refusal(subject="{{ phone }}", body="{{ first_name }}")
    assert (error.code, error.field) == ("template_unknown_variable", "subject")


@pytest.mark.parametrize(
    "source",
    [
        "{{ recommendations.__class__ }}",
        "{{ first_name.__class__.__mro__ }}",
        "{% load static %}",
        "{% load log %}{% get_admin_log 10 as log %}",
        '{% include "admin/base.html" %}',
        '{% extends "portal/base.html" %}',
        "{% debug %}",
        "{% ssi '/etc/passwd' %}",
        "{% csrf_token %}",
        "{% url 'admin:index' %}",
        "{% autoescape off %}{{ first_name }}{% endautoescape %}",
        "{{ first_name|safe }}",
        "{{ first_name|safeseq }}",
        "{% for x in recommendations %}",
    ],
)
def test_escape_attempts_are_syntax_errors(source):
    error = refusal(body=source)
    assert error.code == "template_syntax"
    assert error.field == "body"


def _email(body=EMAIL_BODY, subject="{{ first_name }}, скидка"):
    return SimpleNamespace(channel="email", subject=subject, body=body)


def test_email_is_escaped_html_with_a_plain_text_alternative():
    variables = {**SAMPLE_VARIABLES, "first_name": '<script>alert("x")</script>'}
    rendered = render_message(_email(), variables)
    assert "<script>" not in rendered.body
    assert "&lt;script&gt;" in rendered.body
    assert rendered.subject == '<script>alert("x")</script>, скидка'  # a header: not HTML
    assert "<" not in rendered.text.replace('<script>alert("x")</script>', "")
    assert "В магазин (https://shop.example.ru/sale?utm_source=email&x=1)" in rendered.text
    assert "Увлажняющий крем для лица, 50 мл — 1490,00 ₽" in rendered.text


def test_links_are_wrapped_except_the_unsubscribe_link():
    seen = []

    def wrapper(url: str) -> str:
        seen.append(url)
        return f"https://track.example.ru/c/{len(seen)}?u=1&v=2"

    variables = {**SAMPLE_VARIABLES, "unsubscribe_url": "https://app.example.ru/consent/u/tok/"}
    rendered = render_message(_email(), variables, link_wrapper=wrapper)
    assert seen[0] == "https://shop.example.ru/sale?utm_source=email&x=1"  # unescaped
    assert 'href="https://track.example.ru/c/1?u=1&amp;v=2"' in rendered.body
    assert 'href="https://app.example.ru/consent/u/tok/"' in rendered.body
    assert "shop.example.ru" not in rendered.body
    assert "https://app.example.ru/consent/u/tok/" in rendered.text  # not wrapped either
    assert all("consent/u" not in url for url in seen)

    sms = SimpleNamespace(
        channel="sms",
        subject="",
        body="{{ first_name }}: https://shop.example.ru/a?b=<1>. Отказ: {{ unsubscribe_url }}",
    )
    rendered = render_message(
        sms, {**variables, "first_name": "Анна & Co"}, link_wrapper=lambda u: "https://t.ru/1"
    )
    # SMS is plain text: nothing escaped; the bare URL wrapped, the unsubscribe link kept.
    assert rendered.body == (
        "Анна & Co: https://t.ru/1<1>. Отказ: https://app.example.ru/consent/u/tok/"
    )
    assert rendered.text == rendered.body


def test_only_plain_values_reach_the_template():
    class Model:
        name = "secret"

        def __str__(self) -> str:
            return "as text"

    push = SimpleNamespace(
        channel="push",
        subject="{{ offer_code }}",
        body="{{ first_name }}|{% for item in recommendations %}{{ item.name }}{% endfor %}",
    )
    rendered = render_message(
        push,
        {
            "first_name": Model(),
            "offer_code": None,
            "recommendations": [{"id": 1, "name": "Чай", "price": 10, "secret": "x"}],
            "password": "never",
        },
    )
    assert rendered.body == "as text|Чай"
    assert rendered.subject == ""


def test_render_refuses_an_unchecked_template():
    with pytest.raises(ServiceError) as caught:
        render_message(_email(body="{{ email }}"), SAMPLE_VARIABLES)
    assert caught.value.code == "template_unknown_variable"


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 153 * 8, 8),
        ("я" * 70, 1),
        ("я" * 71, 2),
        ("я" * 67 * 8, 8),
        ("я" * (67 * 8 + 1), 9),
        ("[" * 80, 1),  # extended GSM characters count twice
        ("[" * 81, 2),
    ],
)
def test_sms_segments(text, segments):
    assert sms_segments(text) == segments
