"""`make run` follows PORT: the public base URL, the stub ports and every platform URL derived
by scripts/run_embedded.sh (`--print-config`), and what the Django settings read from them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from demo.consents import local_origins
from tests.stubs.__main__ import parse_args, stubs_port_base

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_embedded.sh"
DERIVED = (
    "PORT",
    "STUBS_PORT_BASE",
    "PUBLIC_BASE_URL",
    "YANDEX_AUDIENCES_BASE_URL",
    "VK_ADS_BASE_URL",
    "MYTARGET_BASE_URL",
    "UNISENDER_BASE_URL",
    "SENDSAY_BASE_URL",
    "SMSRU_BASE_URL",
    "SMSC_BASE_URL",
    "RUSTORE_BASE_URL",
    "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS",
    "EMAIL_URL",
)
# Which stub each platform URL must point at (index into the stub ports).
PLATFORM_URLS = {
    "YANDEX_AUDIENCES_BASE_URL": "yandex_port",
    "VK_ADS_BASE_URL": "vk_port",
    "MYTARGET_BASE_URL": "mytarget_port",
    "UNISENDER_BASE_URL": "unisender_port",
    "SENDSAY_BASE_URL": "sendsay_port",
    "SMSRU_BASE_URL": "smsru_port",
    "SMSC_BASE_URL": "smsc_port",
    "RUSTORE_BASE_URL": "rustore_port",
    "EMAIL_URL": "smtp_port",
}


def clean_env(**given: str) -> dict[str, str]:
    """The environment without anything run_embedded.sh derives, no .env, plus ``given``."""
    env = {k: v for k, v in os.environ.items() if k not in DERIVED}
    env["RUN_EMBEDDED_ENV_FILE"] = str(ROOT / "var" / "no-such.env")
    env.update(given)
    return env


def print_config(**given: str) -> dict[str, str]:
    done = subprocess.run(  # noqa: S603 - our own script
        ["bash", str(SCRIPT), "--print-config"],  # noqa: S607
        env=clean_env(**given),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def port_of(url: str) -> int:
    return urlsplit(url).port


def test_port_8080_moves_the_public_url_the_stubs_and_every_platform_url():
    config = print_config(PORT="8080")

    assert config["PUBLIC_BASE_URL"] == "http://127.0.0.1:8080"
    stubs = parse_args(shlex.split(config["STUB_ARGS"]))
    assert (stubs.yandex_port, stubs.vk_port, stubs.mytarget_port) == (8781, 8782, 8783)
    for name, stub in PLATFORM_URLS.items():
        assert urlsplit(config[name]).hostname == "127.0.0.1", name
        assert port_of(config[name]) == getattr(stubs, stub), name
    assert config["YANDEX_AUDIENCES_BASE_URL"].endswith("/v1/management/")
    assert config["VK_ADS_BASE_URL"].endswith("/api/")
    assert (stubs.unisender_port, stubs.webpush_port, stubs.smtp_port) == (8784, 8789, 8790)
    assert config["EMAIL_URL"] == "smtp://127.0.0.1:8790"
    assert config["WEBPUSH_ALLOW_PRIVATE_ENDPOINTS"] == "1"
    # Nothing is left on the default ports.
    assert not any(":8000" in v or ":870" in v for v in config.values())


def test_stubs_port_base_can_be_set_and_the_default_run_is_unchanged():
    moved = print_config(PORT="8080", STUBS_PORT_BASE="9100")
    stubs = parse_args(shlex.split(moved["STUB_ARGS"]))
    assert (stubs.yandex_port, stubs.vk_port, stubs.mytarget_port) == (9101, 9102, 9103)
    assert {port_of(moved[name]) for name in PLATFORM_URLS} == {
        9101, 9102, 9103, 9104, 9105, 9106, 9107, 9108, 9110
    }  # fmt: skip
    assert parse_args(shlex.split(moved["STUB_ARGS"])).webpush_port == 9109

    default = print_config()
    assert default["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert port_of(default["VK_ADS_BASE_URL"]) == 8702
    assert port_of(default["YANDEX_AUDIENCES_BASE_URL"]) == 8701


def test_a_value_from_the_environment_wins_over_the_derived_one():
    config = print_config(PORT="8080", PUBLIC_BASE_URL="https://cvm.example.ru")
    assert config["PUBLIC_BASE_URL"] == "https://cvm.example.ru"
    assert port_of(config["VK_ADS_BASE_URL"]) == 8782


def test_a_bad_port_is_refused():
    done = subprocess.run(  # noqa: S603
        ["bash", str(SCRIPT), "--print-config"],  # noqa: S607
        env=clean_env(PORT="80a"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "PORT" in done.stderr


def test_the_stub_runner_derives_the_same_ports_without_options():
    assert stubs_port_base({"PORT": "8080"}) == 8780
    assert stubs_port_base({"PORT": "8080", "STUBS_PORT_BASE": "9100"}) == 9100
    assert stubs_port_base({}) == 8700
    defaults = parse_args([])
    assert (defaults.unisender_port, defaults.rustore_port, defaults.smtp_port) == (
        stubs_port_base() + 4,
        stubs_port_base() + 8,
        stubs_port_base() + 10,
    )


def test_django_settings_read_the_derived_variables():
    """The names the script exports are the names the settings read."""
    config = print_config(PORT="8080")
    env = clean_env(**{k: config[k] for k in DERIVED}, DJANGO_DEBUG="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "import json, django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; "
        "django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'public': s.PUBLIC_BASE_URL, 'yandex': s.YANDEX_AUDIENCES_BASE_URL, "
        "'vk': s.VK_ADS_BASE_URL, 'mytarget': s.MYTARGET_BASE_URL, "
        "'smsru': s.SMSRU_BASE_URL, 'rustore': s.RUSTORE_BASE_URL, 'email_port': s.EMAIL_PORT, "
        "'webpush_private': s.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS}))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["public"] == "http://127.0.0.1:8080"
    assert (port_of(seen["yandex"]), port_of(seen["vk"]), port_of(seen["mytarget"])) == (
        8781,
        8782,
        8783,
    )
    assert (port_of(seen["smsru"]), port_of(seen["rustore"]), seen["email_port"]) == (
        8786,
        8788,
        8790,
    )
    assert seen["webpush_private"] is True


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8080", ["http://127.0.0.1:8080", "http://localhost:8080"]),
        ("http://localhost:8000/", ["http://127.0.0.1:8000", "http://localhost:8000"]),
        ("https://cvm.example.ru", ["https://cvm.example.ru"]),
    ],
)
def test_the_demo_banner_site_allows_the_public_origin(base, expected):
    assert local_origins(base) == expected
