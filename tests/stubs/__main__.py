"""Run the ad-platform stubs, the owned-channel stubs and an SMTP sink until Ctrl-C (or
SIGTERM), for the `make run` demo.

    python -m tests.stubs --yandex-port 8701 --vk-port 8702 --mytarget-port 8703 \\
        --processing-delay 20 --yandex-token demo-yandex-token \\
        --vk-client-id demo --vk-client-secret demo-secret --mail-dir var/mail

Without port options the stubs listen on STUBS_PORT_BASE+1..3 (default PORT+701..703) for the
ad platforms, +4..9 for UniSender, Sendsay, SMS.ru, SMSC, RuStore push and web push, +10
for the SMTP sink, +11 for Yandex Direct and +12..14 for Roistat, Calltouch and Yandex
Metrica: the ports scripts/run_embedded.sh derives too. The owned-channel stubs take their
default test credentials (``stub.credentials``: see each module's constants).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from tests.stubs.base import FAULT_KINDS
from tests.stubs.calltouch import CalltouchStub
from tests.stubs.readers import SimulatedReaders
from tests.stubs.roistat import RoistatStub
from tests.stubs.rustore import RuStoreStub
from tests.stubs.sendsay import SendsayStub
from tests.stubs.smsc import SmscStub
from tests.stubs.smsru import SmsRuStub
from tests.stubs.smtp_sink import SmtpSink
from tests.stubs.unisender import UniSenderStub
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.webpush import WebPushStub
from tests.stubs.yandex_audiences import YandexAudiencesStub
from tests.stubs.yandex_direct import DEFAULT_LOGIN, DEFAULT_TOKEN, YandexDirectStub
from tests.stubs.yandex_metrica import YandexMetricaStub

# Offsets from STUBS_PORT_BASE of the owned-channel stubs (after the ad platforms' 1..3).
CHANNEL_PORTS = {
    "unisender": 4,
    "sendsay": 5,
    "smsru": 6,
    "smsc": 7,
    "rustore": 8,
    "webpush": 9,
    "smtp": 10,
    # Yandex Direct (reports spend import, bid modifiers): after the SMTP sink.
    "direct": 11,
}

# Offsets of the spend, calls and offline-conversion stubs (reports); 11 is left for Yandex
# Direct's.
REPORT_PORTS = {
    "roistat": 12,
    "calltouch": 13,
    "metrica": 14,
}


def stubs_port_base(environ: dict[str, str] | None = None) -> int:
    """STUBS_PORT_BASE, else PORT + 700 (PORT 8000 by default), as run_embedded.sh derives it."""
    environ = os.environ if environ is None else environ
    if environ.get("STUBS_PORT_BASE"):
        return int(environ["STUBS_PORT_BASE"])
    return int(environ.get("PORT") or 8000) + 700


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    base = stubs_port_base()
    parser = argparse.ArgumentParser(
        prog="python -m tests.stubs",
        description="Loopback stubs of Yandex Audiences, VK Ads, myTarget, UniSender, Sendsay, "
        "SMS.ru, SMSC, RuStore push, a web push service, an SMTP sink, Yandex Direct, Roistat, "
        "Calltouch and Yandex Metrica.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--yandex-port", type=int, default=base + 1)
    parser.add_argument("--vk-port", type=int, default=base + 2)
    parser.add_argument("--mytarget-port", type=int, default=base + 3)
    for name, offset in (CHANNEL_PORTS | REPORT_PORTS).items():
        parser.add_argument(f"--{name}-port", type=int, default=base + offset)
    parser.add_argument(
        "--mail-dir", default=None, help="the SMTP sink writes each message here as .eml"
    )
    parser.add_argument(
        "--processing-delay", type=float, default=20.0, help="seconds a segment/list processes"
    )
    parser.add_argument("--yandex-token", action="append", help="accepted OAuth token(s)")
    parser.add_argument(
        "--yandex-quota-per-minute",
        type=int,
        default=10,
        help="create/modify calls per minute (documented: 10)",
    )
    parser.add_argument(
        "--direct-token", default=DEFAULT_TOKEN, help="accepted Yandex Direct OAuth token"
    )
    parser.add_argument(
        "--direct-login", default=DEFAULT_LOGIN, help="Client-Login the Direct token acts for"
    )
    parser.add_argument("--match-percent", type=int, default=80)
    parser.add_argument("--vk-client-id", default="test-client")
    parser.add_argument("--vk-client-secret", default="test-secret")
    parser.add_argument("--mytarget-client-id", help="defaults to --vk-client-id", default=None)
    parser.add_argument(
        "--mytarget-client-secret", help="defaults to --vk-client-secret", default=None
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="0..1, share of faults")
    parser.add_argument("--fault-seed", type=int, default=None)
    parser.add_argument(
        "--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated: 429,503,timeout"
    )
    parser.add_argument("--timeout-sleep", type=float, default=3.0)
    parser.add_argument("--quiet", action="store_true", help="do not print each request")
    parser.add_argument(
        "--readers-open-share",
        type=float,
        default=0.0,
        help="demo: share of received emails whose open pixel is fetched (0 = off)",
    )
    parser.add_argument(
        "--readers-click-share",
        type=float,
        default=0.0,
        help="demo: share of received emails whose first tracked link is followed",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common: dict[str, Any] = {
        "host": args.host,
        "processing_delay": args.processing_delay,
        "fault_rate": args.fault_rate,
        "fault_seed": args.fault_seed,
        "fault_kinds": [kind for kind in args.fault_kinds.split(",") if kind],
        "timeout_sleep": args.timeout_sleep,
        "log_requests": not args.quiet,
    }
    stubs = {
        "Yandex Audiences": YandexAudiencesStub(
            port=args.yandex_port,
            tokens=set(args.yandex_token or ["test-yandex-token"]),
            quota_per_minute=args.yandex_quota_per_minute,
            match_percent=args.match_percent,
            **common,
        ),
        "VK Ads": VkAdsStub(
            port=args.vk_port,
            credentials={args.vk_client_id: args.vk_client_secret},
            platform="vk",
            **common,
        ),
        "myTarget": VkAdsStub(
            port=args.mytarget_port,
            credentials={
                args.mytarget_client_id or args.vk_client_id: args.mytarget_client_secret
                or args.vk_client_secret
            },
            platform="mytarget",
            **common,
        ),
    }
    channel_common = {k: v for k, v in common.items() if k != "processing_delay"}
    stubs.update(
        {
            "UniSender": UniSenderStub(port=args.unisender_port, **channel_common),
            "Sendsay": SendsayStub(port=args.sendsay_port, **channel_common),
            "SMS.ru": SmsRuStub(port=args.smsru_port, **channel_common),
            "SMSC": SmscStub(port=args.smsc_port, **channel_common),
            "RuStore push": RuStoreStub(port=args.rustore_port, **channel_common),
            "Web push": WebPushStub(port=args.webpush_port, **channel_common),
            "Yandex Direct": YandexDirectStub(
                port=args.direct_port,
                accounts={args.direct_token: {args.direct_login}},
                **channel_common,
            ),
            "Roistat": RoistatStub(port=args.roistat_port, **channel_common),
            "Calltouch": CalltouchStub(port=args.calltouch_port, **channel_common),
            "Yandex Metrica": YandexMetricaStub(
                port=args.metrica_port,
                processing_delay=args.processing_delay,
                **channel_common,
            ),
            "SMTP sink": SmtpSink(
                host=args.host,
                port=args.smtp_port,
                folder=args.mail_dir,
                log_messages=not args.quiet,
                readers=SimulatedReaders(
                    open_share=args.readers_open_share, click_share=args.readers_click_share
                )
                if args.readers_open_share > 0
                else None,
            ),
        }
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = []
    try:
        for label, stub in stubs.items():
            stub.start()
            started.append(stub)
            where = stub.email_url if isinstance(stub, SmtpSink) else stub.base_url
            print(f"{label}: {where}", flush=True)
        print("Stubs running; Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for stub in started:
            stub.stop()


if __name__ == "__main__":
    main()
