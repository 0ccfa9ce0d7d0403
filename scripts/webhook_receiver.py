"""A verifying webhook receiver for development: prints one line per event it receives.

Development settings allow http and loopback endpoints, so:

1. Create an endpoint with the createWebhook mutation, url "http://127.0.0.1:9000/", and copy
   the "whsec_…" secret it returns (it is shown only then).
2. Run `.venv/bin/python scripts/webhook_receiver.py --secret whsec_… --port 9000`.
3. Send a webhook.test event to the endpoint, or let the evaluation raise an alert.

Each event is verified with standardwebhooks (signature and a 5-minute timestamp tolerance):
a good one prints `<type> <webhook-id> <ticker> <headline>` and is answered 204; a bad one
is answered 400, which the sender counts as a failed attempt and retries.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

HOST = "127.0.0.1"
DEFAULT_PORT = 9000
MAX_BODY_BYTES = 1024 * 1024


def describe(event: Any, message_id: str) -> str:
    """The line printed for a verified event."""
    if not isinstance(event, dict):
        return f"? {message_id} (not a JSON object)"
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    if event.get("type") == "alert.created":
        detail = f"{data.get('ticker')} {data.get('headline')}"
    else:
        detail = " ".join(f"{key}={value}" for key, value in data.items())
    return f"{event.get('type')} {message_id} {detail}".rstrip()


def make_server(secret: str, port: int, out: TextIO = sys.stdout) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:`port` (0 picks a free one) that verifies with `secret`."""
    webhook = Webhook(secret)
    lock = threading.Lock()  # one line at a time when events arrive together

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                self._answer(400, "bad content-length")
                return
            if length < 0 or length > MAX_BODY_BYTES:
                self._answer(413, "body too large")
                return
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            try:
                event = webhook.verify(body, headers)
            except (WebhookVerificationError, ValueError) as exc:
                # ValueError: a malformed signature header or a body that is not JSON.
                with lock:
                    print(f"REJECTED {headers.get('webhook-id')}: {exc}", file=out, flush=True)
                self._answer(400, f"verification failed: {exc}")
                return
            with lock:
                print(describe(event, headers["webhook-id"]), file=out, flush=True)
            self._answer(204)

        def _answer(self, status: int, text: str = "") -> None:
            payload = text.encode()
            self.send_response(status)
            if status != 204:
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if status != 204:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the event lines are the log

    return ThreadingHTTPServer((HOST, port), Handler)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_… secret")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        server = make_server(args.secret, args.port)
    except (EmptyWebhookSecretError, ValueError, OSError) as exc:
        # A secret that is not base64, or a port already in use.
        parser.error(str(exc))
    print(f"listening on http://{HOST}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
