"""A Web Push service on loopback that checks what a real one checks, and reads the message.

Each request to a subscription's endpoint must carry `Authorization: vapid t=<JWT>, k=<key>`
whose JWT is ES256-signed by that key, with `aud` the endpoint's origin and an `exp` in the
future and at most 24 hours ahead (RFC 8292), plus `TTL` and `Content-Encoding: aes128gcm`;
the body is decrypted with the subscription's private key and auth secret (RFC 8291) as the
browser would. A request that fails a check gets 400/401/403 with the reason; otherwise the
scripted reply for that subscription (201 when none is queued). Unknown endpoints get 404.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAX_JWT_LIFETIME = 24 * 3600


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PushReply:
    """What the push service answers to one message."""

    status: int = 201
    retry_after: str | None = None
    body: bytes = b""


@dataclass
class FakeSubscription:
    """A browser's subscription: its endpoint and keys, as `pushManager.subscribe` gives them."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    replies: deque[PushReply] = field(default_factory=deque)

    @property
    def path(self) -> str:
        return "/" + self.endpoint.split("/", 3)[3]

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def script(self, *replies: PushReply) -> None:
        self.replies.extend(replies)


@dataclass(frozen=True)
class PushMessage:
    """One request the service received, with what its checks found."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    # Set when every check passed: the JWT's claims, the signer's public key, the plaintext.
    claims: dict[str, Any] | None = None
    vapid_key: str | None = None
    payload: bytes | None = None
    error: str | None = None
    received_at: float = 0.0

    @property
    def data(self) -> dict[str, Any]:
        assert self.payload is not None, self.error
        decoded: dict[str, Any] = json.loads(self.payload)
        return decoded


class CheckFailed(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FakePushService:
    """The HTTP server; create subscriptions with `subscribe()`."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
        self.server.RequestHandlerClass = _handler(self)
        self.subscriptions: dict[str, FakeSubscription] = {}
        self.messages: list[PushMessage] = []
        self.lock = threading.Lock()
        self.delivered = threading.Condition(self.lock)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakePushService:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def subscribe(self) -> FakeSubscription:
        """A new subscription with its own P-256 key pair and 16-byte auth secret."""
        subscription = FakeSubscription(
            endpoint=f"{self.origin}/push/{secrets.token_urlsafe(24)}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
        )
        with self.lock:
            self.subscriptions[subscription.path] = subscription
        return subscription

    def accepted(self) -> list[PushMessage]:
        """Messages that passed every check and were answered 2xx."""
        with self.lock:
            return [m for m in self.messages if m.payload is not None and m.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[PushMessage]:
        """Block until `count` messages were accepted; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self.delivered:
            while True:
                accepted = [m for m in self.messages if m.payload is not None and m.status < 300]
                if len(accepted) >= count:
                    return accepted
                left = deadline - time.monotonic()
                assert left > 0, f"{len(accepted)} of {count} push messages arrived"
                self.delivered.wait(left)

    def check(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[PushMessage, PushReply]:
        """Run a push service's checks on one request; the message and the scripted reply."""
        subscription = self.subscriptions.get(path)
        if subscription is None:
            raise CheckFailed(404, "no such subscription")
        claims, key = _check_vapid(headers.get("authorization", ""), self.origin)
        if "ttl" not in headers or not headers["ttl"].isdigit():
            raise CheckFailed(400, "TTL header missing")
        if headers.get("content-encoding") != "aes128gcm":
            raise CheckFailed(400, "Content-Encoding must be aes128gcm")
        try:
            payload = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except Exception as exc:  # any decryption failure is the sender's
            raise CheckFailed(400, f"cannot decrypt: {exc!r}") from None
        with self.lock:
            reply = subscription.replies.popleft() if subscription.replies else PushReply()
        message = PushMessage(path, headers, body, reply.status, claims, key, payload)
        return message, reply


def _check_vapid(authorization: str, origin: str) -> tuple[dict[str, Any], str]:
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise CheckFailed(401, "Authorization must use the vapid scheme")
    parts: dict[str, str] = {}
    for item in params.split(","):
        name, _, value = item.strip().partition("=")
        parts[name.strip()] = value.strip()
    if "t" not in parts or "k" not in parts:
        raise CheckFailed(401, "vapid needs t= and k=")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(parts["k"])
        )
        claims: dict[str, Any] = jwt.decode(
            parts["t"],
            public,
            algorithms=["ES256"],
            audience=origin,
            options={"require": ["exp", "aud", "sub"]},
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise CheckFailed(403, f"bad VAPID JWT: {exc}") from None
    if claims["exp"] > time.time() + MAX_JWT_LIFETIME:
        raise CheckFailed(403, "VAPID JWT exp is more than 24 hours ahead")
    if not str(claims["sub"]).startswith(("mailto:", "https://")):
        raise CheckFailed(403, "VAPID sub must be mailto: or https:")
    return claims, parts["k"]


def _handler(service: FakePushService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            try:
                message, reply = service.check(self.path, headers, body)
            except CheckFailed as failed:
                message = PushMessage(self.path, headers, body, failed.status, error=failed.reason)
                reply = PushReply(failed.status, body=failed.reason.encode())
            message = dataclasses.replace(message, received_at=time.time())
            with service.delivered:
                service.messages.append(message)
                service.delivered.notify_all()
            self.send_response(reply.status)
            if reply.retry_after is not None:
                self.send_header("retry-after", reply.retry_after)
            if reply.status == 201:
                self.send_header("location", f"{service.origin}/message/{len(service.messages)}")
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def running_push_service() -> Iterator[FakePushService]:
    """Start a push service for a fixture; stop it afterwards."""
    service = FakePushService().start()
    try:
        yield service
    finally:
        service.close()
