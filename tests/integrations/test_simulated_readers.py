"""The demo's simulated readers fetch the open pixel and the first tracked link of a received
email, on loopback only, never following the redirect."""

from __future__ import annotations

import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.stubs.readers import SimulatedReaders


def test_readers_open_and_click_on_loopback_only():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(302 if "/t/c/" in self.path else 200)
            self.send_header("Location", "https://shop.example/")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    message = EmailMessage()
    message.set_content("text")
    message.add_alternative(
        f'<a href="{base}/t/c/abc">x</a><a href="https://evil.example/t/c/x">y</a>'
        f'<img src="{base}/t/o/abc.gif">',
        subtype="html",
    )
    readers = SimulatedReaders(open_share=1.0, click_share=1.0, delay=(0, 0), seed=1)
    readers.on_email(message)
    away = EmailMessage()
    away.set_content("t")
    away.add_alternative('<img src="https://evil.example/t/o/abc.gif">', subtype="html")
    readers.on_email(away)
    deadline = time.monotonic() + 5
    while readers.clicked < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.shutdown()
    assert seen == ["/t/o/abc.gif", "/t/c/abc"]  # open first, then one click, nothing else
    assert (readers.opened, readers.clicked) == (1, 1)
