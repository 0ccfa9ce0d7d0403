"""Email digests: rendering, signed one-click unsubscribe links, and SMTP / .eml senders."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import email.utils
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import ssl
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

import aiosmtplib
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.errors import BadUserInput

# --- digest content ---------------------------------------------------------------------

ALERT_TYPE_LABELS = {
    "valuation_regime_change": "Valuation regime",
    "trend_break": "200-day trend",
    "fundamental_inflection": "EPS direction",
}

# The template names end in ".jinja", so "html" alone would never match them; anything not
# known to be plain text is escaped, so a new template fails safe.
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(
        enabled_extensions=("html", "html.jinja"),
        disabled_extensions=("txt", "txt.jinja"),
        default=True,
    ),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEXT_TEMPLATE = _ENV.get_template("digest.txt.jinja")
_HTML_TEMPLATE = _ENV.get_template("digest.html.jinja")


class _ListUnsubscribeHeader(UnstructuredHeader, BaseHeader):
    """List-Unsubscribe as written: `<https://…>`, never folded into RFC 2047 encoded words.

    Mail clients look for the angle-bracketed URL itself (RFC 2369, RFC 8058); the default
    folding at 78 characters would encode a long URL and hide it. The value is ours (the public
    base URL and a base64url token), so it holds no line break or non-ASCII text.
    """

    def fold(self, *, policy: Policy) -> str:
        """The header on one line, however long (well under SMTP's 998 characters)."""
        return f"{self.name}: {self}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _ListUnsubscribeHeader)
_DIGEST_POLICY = email.policy.default.clone(header_factory=_HEADERS)

# Tickers named in a multi-alert subject before it says "and N more".
_SUBJECT_TICKERS = 2


@dataclass(frozen=True)
class DigestAlert:
    """One alert as an email shows it."""

    alert_id: UUID
    ticker: str
    stock_name: str | None
    alert_type: str
    as_of: date
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DigestAlert:
        """From an alert_history row joined with its entity (ticker, name)."""
        return cls(
            alert_id=row["id"],
            ticker=row["ticker"],
            stock_name=row["name"],
            alert_type=str(row["alert_type"]),
            as_of=row["as_of"],
            headline=row["headline"],
            what_changed=row["what_changed"],
            why_it_matters=row["why_it_matters"],
            before_vs_now=row["before_vs_now"],
            what_didnt_change=row["what_didnt_change"],
            created_at=row["sent_at"],
        )


def digest_subject(alerts: Sequence[DigestAlert]) -> str:
    """One alert: its headline; several: "3 material changes: AAPL, MSFT and 1 more"."""
    if not alerts:
        raise ValueError("a digest needs at least one alert")
    if len(alerts) == 1:
        return _one_line(alerts[0].headline)
    tickers = sorted({_one_line(a.ticker) for a in alerts})
    if len(tickers) <= _SUBJECT_TICKERS + 1:
        named = ", ".join(tickers[:-1]) + " and " + tickers[-1] if len(tickers) > 1 else tickers[0]
    else:
        rest = len(tickers) - _SUBJECT_TICKERS
        named = f"{', '.join(tickers[:_SUBJECT_TICKERS])} and {rest} more"
    return f"{len(alerts)} material changes: {named}"


def build_digest(
    *,
    to: str,
    sender: str,
    alerts: Sequence[DigestAlert],
    public_base_url: str,
    unsubscribe_url: str,
    message_id_domain: str = "material-changes.local",
) -> EmailMessage:
    """A multipart/alternative (text + HTML) digest of `alerts`, ready for an EmailSender."""
    subject = digest_subject(alerts)
    base = public_base_url.rstrip("/")
    context = {
        "subject": subject,
        "count": len(alerts),
        "alerts": [_alert_context(a, base) for a in alerts],
        "public_base_url": base,
        "unsubscribe_url": unsubscribe_url,
    }
    message = EmailMessage(policy=_DIGEST_POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-ID"] = email.utils.make_msgid(domain=message_id_domain)
    # RFC 8058: mail clients show an unsubscribe button that POSTs to the URL, no page visit.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 3834: keeps out-of-office auto-replies from answering a machine.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_TEXT_TEMPLATE.render(context))
    message.add_alternative(_HTML_TEMPLATE.render(context), subtype="html")
    return message


def _alert_context(alert: DigestAlert, base: str) -> dict[str, str]:
    label = ALERT_TYPE_LABELS.get(alert.alert_type, alert.alert_type.replace("_", " ").capitalize())
    stock = f"{alert.stock_name} ({alert.ticker})" if alert.stock_name else alert.ticker
    return {
        "ticker": alert.ticker,
        "stock": stock,
        "label": label,
        "as_of": alert.as_of.isoformat(),
        "headline": alert.headline,
        "what_changed": alert.what_changed,
        "why_it_matters": alert.why_it_matters,
        "before_vs_now": alert.before_vs_now,
        "what_didnt_change": alert.what_didnt_change,
        "url": f"{base}/stocks/{quote(alert.ticker, safe='')}",
    }


def _one_line(text: str) -> str:
    """Header values must not contain line breaks; alert text is ours, but stay safe."""
    return " ".join(text.split())


# --- one-click unsubscribe tokens -------------------------------------------------------

# A token is the user id and the time it was issued, encrypted and authenticated (AES-GCM under
# a key derived from the link secret): a reader learns nothing from it, a forger cannot make
# one, and it stops working UNSUBSCRIBE_TOKEN_DAYS after it was issued.
_TOKEN_KEY_PURPOSE = b"material-changes unsubscribe token key v2"
_TOKEN_AAD = b"unsubscribe"
_NONCE_BYTES = 12
_UUID_BYTES = 16
_ISSUED_FORMAT = struct.Struct(">q")
_TAG_BYTES = 16
_TOKEN_BYTES = _NONCE_BYTES + _UUID_BYTES + _ISSUED_FORMAT.size + _TAG_BYTES
_TOKEN_CHARS = (4 * _TOKEN_BYTES + 2) // 3  # base64url without padding
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_TOKEN_DAYS = 365


class ExpiredLink(BadUserInput):
    """A genuine unsubscribe token, issued longer ago than tokens are honoured."""


def _token_cipher(secret: bytes) -> AESGCM:
    return AESGCM(hmac.new(secret, _TOKEN_KEY_PURPOSE, hashlib.sha256).digest())


def unsubscribe_token(user_id: UUID, secret: bytes, *, issued_at: datetime | None = None) -> str:
    """An opaque link token for the user: base64url of nonce, ciphertext and tag, no padding."""
    issued = int((issued_at or datetime.now(UTC)).timestamp())
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _token_cipher(secret).encrypt(
        nonce, user_id.bytes + _ISSUED_FORMAT.pack(issued), _TOKEN_AAD
    )
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


def verify_unsubscribe_token(
    token: str,
    secret: bytes,
    *,
    max_age_days: int = DEFAULT_TOKEN_DAYS,
    now: datetime | None = None,
) -> UUID:
    """The user id a token was issued for; BadUserInput if malformed, forged or expired."""
    invalid = BadUserInput("invalid unsubscribe link")
    if not isinstance(token, str):
        raise invalid
    stripped = token.strip().rstrip("=")
    # Checked before decoding: b64decode would otherwise skip stray characters silently.
    if len(stripped) != _TOKEN_CHARS or not _TOKEN_RE.fullmatch(stripped):
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
        # One spelling per token: the last character's unused bits must be zero.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != stripped:
            raise invalid
        plain = _token_cipher(secret).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _TOKEN_AAD)
    except (binascii.Error, ValueError, InvalidTag):
        raise invalid from None
    user_id = UUID(bytes=plain[:_UUID_BYTES])
    (issued,) = _ISSUED_FORMAT.unpack(plain[_UUID_BYTES:])
    age = (now or datetime.now(UTC)).timestamp() - issued
    if age > max_age_days * 86_400:
        raise ExpiredLink("this unsubscribe link has expired")
    return user_id


def unsubscribe_url(public_base_url: str, token: str) -> str:
    """The one-click link for List-Unsubscribe and the footer."""
    return f"{public_base_url.rstrip('/')}/unsubscribe?token={token}"


# --- senders ----------------------------------------------------------------------------


class EmailDeliveryError(Exception):
    """A message was not handed over; `code` is the SMTP reply code when there was one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EmailTemporaryError(EmailDeliveryError):
    """Worth retrying later: SMTP 4xx, connection refused or lost, timeouts."""


class EmailPermanentError(EmailDeliveryError):
    """Retrying will not help: SMTP 5xx, such as a recipient the server does not know."""


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


_SMTP_SCHEMES = {"smtp": 587, "smtps": 465}
_LOCALHOST_NAMES = {"localhost", "localhost.localdomain"}


class SmtpSender:
    """Sends through an SMTP server: STARTTLS on `smtp://`, implicit TLS on `smtps://`."""

    def __init__(
        self,
        *,
        hostname: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        require_starttls: bool = True,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.username = username
        self._password = password
        self.use_tls = use_tls
        self.require_starttls = require_starttls
        self.timeout = timeout
        self.tls_context = tls_context

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 30.0, tls_context: ssl.SSLContext | None = None
    ) -> SmtpSender:
        """Parse SMTP_URL: smtp://[user[:password]@]host[:587] or smtps://…[:465].

        Plain SMTP without STARTTLS is allowed only to a loopback host (a local relay or a
        test server); anywhere else a server that cannot upgrade the connection is an error.
        """
        # The URL itself is never echoed back: it may carry the password.
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _SMTP_SCHEMES:
            raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, got {scheme!r}")
        host = parts.hostname
        if not host:
            raise ValueError("SMTP_URL must name a host, e.g. smtp://user:pass@mail.example:587")
        try:
            port = parts.port or _SMTP_SCHEMES[scheme]
        except ValueError:
            raise ValueError("SMTP_URL has an invalid port") from None
        use_tls = scheme == "smtps"
        return cls(
            hostname=host,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            require_starttls=not use_tls and not _is_loopback(host),
            timeout=timeout,
            tls_context=tls_context,
        )

    def __repr__(self) -> str:
        password = "'***'" if self._password is not None else "None"
        tls = "implicit" if self.use_tls else "starttls" if self.require_starttls else "optional"
        return (
            f"SmtpSender(hostname={self.hostname!r}, port={self.port}, "
            f"username={self.username!r}, password={password}, tls={tls})"
        )

    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the server; EmailTemporaryError or EmailPermanentError if not."""
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self._password,
                use_tls=self.use_tls,
                # None upgrades when the server offers STARTTLS and goes on in plain text when
                # it does not; only ever chosen for loopback hosts (see from_url).
                start_tls=False if self.use_tls else (True if self.require_starttls else None),
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            error = EmailPermanentError if codes and min(codes) >= 500 else EmailTemporaryError
            raise error(
                f"SMTP recipients refused: {detail}", code=max(codes, default=None)
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = EmailPermanentError if exc.code >= 500 else EmailTemporaryError
            raise error(f"SMTP {exc.code}: {exc.message}", code=exc.code) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused or lost, timeouts, TLS failures, a server without STARTTLS:
            # about the server, not this message, so a retry can succeed once it is fixed.
            raise EmailTemporaryError(f"SMTP {type(exc).__name__}: {exc}") from exc


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmlFileSender:
    """Writes each message as an .eml file: development's outbox when SMTP_URL is unset."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"EmlFileSender(directory={str(self.directory)!r})"

    async def send(self, message: EmailMessage) -> None:
        """Write `message` to a new file in the directory; EmailTemporaryError if that fails."""
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise EmailTemporaryError(f"could not write .eml to {self.directory}: {exc}") from exc

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = self.directory / f"{stamp}-{_recipient_slug(message)}-{secrets.token_hex(4)}.eml"
        data = message.as_bytes(policy=email.policy.SMTP)
        # Written under a dot-name and renamed, so a reader never sees half a message.
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target


def _recipient_slug(message: EmailMessage) -> str:
    """The first recipient's local part, safe as a file name fragment."""
    addresses = email.utils.getaddresses([str(v) for v in message.get_all("To", [])])
    address = next((addr for _, addr in addresses if addr), "")
    local = address.rpartition("@")[0] or address
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", local).strip("._")[:40]
    return slug or "unknown"
