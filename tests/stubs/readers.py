"""Simulated readers for the `make run` demo: a share of the people who get an email open it
(fetch its open pixel) and a share click (follow its first tracked link) a little later, so the
demo shows opens and clicks flowing back as Events and in the chains' funnels.

Only loopback addresses are fetched (the demo's own web server), redirects are never followed
(the click's target is the client's shop, off this machine), and each request has a short
timeout: the traffic is bounded by the mail the sink receives."""

from __future__ import annotations

import random
import re
import threading
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx

PIXEL = re.compile(r'<img src="(https?://[^"]+/t/o/[^"]+)"')
TRACKED = re.compile(r'href="(https?://[^"]+/t/c/[^"]+)"')
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class SimulatedReaders:
    def __init__(
        self,
        *,
        open_share: float = 0.45,
        click_share: float = 0.15,
        delay: tuple[float, float] = (3.0, 40.0),
        seed: int | None = None,
    ) -> None:
        self.open_share = open_share
        self.click_share = click_share
        self.delay = delay
        self._rng = random.Random(seed)  # noqa: S311 - a demo's dice, not security
        self._lock = threading.Lock()
        self.opened = 0
        self.clicked = 0

    def on_email(self, message: EmailMessage) -> None:
        body = message.get_body(("html",))
        if body is None:
            return
        html = body.get_content()
        pixel = PIXEL.search(html)
        links = TRACKED.findall(html)
        with self._lock:
            opens = pixel is not None and self._rng.random() < self.open_share
            clicks = (
                opens
                and bool(links)
                and self._rng.random() < self.click_share / max(self.open_share, 1e-9)
            )
            wait = self._rng.uniform(*self.delay)
        if opens:
            urls = [pixel.group(1)] + ([links[0]] if clicks else [])
            timer = threading.Timer(wait, self._visit, args=(urls,))
            timer.daemon = True
            timer.start()

    def _visit(self, urls: list[str]) -> None:
        for url in urls:
            if urlsplit(url).hostname not in LOOPBACK:
                return
            try:
                httpx.get(url, timeout=5, follow_redirects=False)
            except httpx.HTTPError:
                return
            with self._lock:
                if "/t/o/" in url:
                    self.opened += 1
                else:
                    self.clicked += 1
