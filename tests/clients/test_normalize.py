"""Property tests for identity normalisation."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.normalize import NormalizationError, normalize_email, normalize_phone
from clients.validators import inn_is_valid

local_part = st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda s: ".." not in s
)
domain = st.from_regex(r"[a-z0-9]{1,12}\.(ru|com|рф|org)", fullmatch=True)


@given(
    local=local_part,
    host=domain,
    pad_left=st.text(" \t", max_size=3),
    pad_right=st.text(" ", max_size=3),
)
def test_email_is_trimmed_lowercased_and_idempotent(local, host, pad_left, pad_right):
    raw = pad_left + (local + "@" + host).upper() + pad_right
    normalised = normalize_email(raw)
    assert normalised == f"{local}@{host}".lower()
    assert normalize_email(normalised) == normalised


@given(st.text(max_size=30).filter(lambda s: "@" not in s))
def test_text_without_at_is_never_an_email(text):
    with pytest.raises(NormalizationError):
        normalize_email(text)


@given(
    operator=st.sampled_from(["916", "903", "926", "999", "985"]),
    number=st.integers(min_value=0, max_value=9_999_999),
    style=st.sampled_from(
        ["8 ({op}) {a}-{b}-{c}", "+7{op}{a}{b}{c}", "8{op}{a}{b}{c}", "+7 ({op}) {a} {b} {c}"]
    ),
)
def test_russian_mobile_numbers_normalise_to_one_e164(operator, number, style):
    digits = f"{number:07d}"
    raw = style.format(op=operator, a=digits[:3], b=digits[3:5], c=digits[5:])
    normalised = normalize_phone(raw)
    assert normalised == f"+7{operator}{digits}"
    assert normalize_phone(normalised) == normalised
    assert phonenumbers.is_valid_number(phonenumbers.parse(normalised))


@given(st.text(alphabet="0123456789-() ", max_size=6))
def test_short_digit_strings_are_rejected_not_half_normalised(text):
    with pytest.raises(NormalizationError):
        normalize_phone(text)


def test_documented_example():
    assert normalize_phone("8 (916) 123-45-67") == "+79161234567"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"


@given(st.integers(min_value=10**8, max_value=10**9 - 1))
def test_inn10_checksum(prefix):
    digits = [int(c) for c in f"{prefix:09d}"]
    check = sum(d * w for d, w in zip(digits, (2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10
    assert inn_is_valid(f"{prefix:09d}{check}")
    assert not inn_is_valid(f"{prefix:09d}{(check + 1) % 10}")


@given(
    digits=st.text(alphabet="0123456789", min_size=9, max_size=12),
    prefix=st.sampled_from(["", "+7", "8", "7", "+8", "+79"]),
    separators=st.sampled_from(["", " ", "-", "()"]),
)
def test_fast_russian_mobile_path_agrees_with_libphonenumber(digits, prefix, separators):
    """The regex fast path must answer exactly what a full libphonenumber parse answers."""
    from clients.normalize import _normalize_phone_full

    raw = prefix + separators.join([digits[:3], digits[3:6], digits[6:]])
    try:
        expected = _normalize_phone_full(raw.strip(), "RU")
    except NormalizationError:
        expected = None
    try:
        got = normalize_phone(raw)
    except NormalizationError:
        got = None
    assert got == expected, raw


# --------------------------------------------------------------------------------------------
# Internationalised addresses: one spelling (local part lowercased, domain in Unicode)

cyrillic_label = st.text(alphabet="абвгдежзиклмнопрстуфхцчшщыэюя", min_size=2, max_size=12)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Юзер@mail.ru", "юзер@mail.ru"),
        ("x@пример.рф", "x@пример.рф"),
        ("x@xn--e1afmkfd.xn--p1ai", "x@пример.рф"),
        ("X@XN--E1AFMKFD.XN--P1AI", "x@пример.рф"),
        (" ИВАН@ПОЧТА.РФ ", "иван@почта.рф"),
        ("anna@Example.RU", "anna@example.ru"),
    ],
)
def test_internationalised_emails_have_one_spelling(raw, normalised):
    assert normalize_email(raw) == normalised
    assert normalize_email(normalised) == normalised


@pytest.mark.parametrize(
    "raw",
    ["x@пример.рф.", "x@-пример.рф", "x@xn--zz.ru", "a..b@mail.ru", "юзер@", "x@ex_ample.ru",
     "x\x00@mail.ru", "x@\ud800.ru", "юзер мой@mail.ru", "x@пример"],
)  # fmt: skip
def test_broken_internationalised_emails_are_refused(raw):
    with pytest.raises(NormalizationError):
        normalize_email(raw)


@given(local=local_part, label=cyrillic_label, upper=st.booleans())
def test_unicode_and_punycode_domains_are_one_address(local, label, upper):
    unicode_form = f"{local}@{label}.рф"
    punycode = f"{local}@{label.encode('idna').decode()}.xn--p1ai"
    spelled = unicode_form.upper() if upper else unicode_form
    assert normalize_email(spelled) == normalize_email(punycode) == unicode_form.lower()
