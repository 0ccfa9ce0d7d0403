"""Email digests against a real SMTP server (aiosmtpd), real TLS and real files."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from aiosmtplib.email import flatten_message
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.delivery.email import (
    DigestAlert,
    EmailSender,
    EmailTemporaryError,
    EmlFileSender,
    ExpiredLink,
    build_digest,
    unsubscribe_token,
    unsubscribe_url,
    verify_unsubscribe_token,
)
from services.errors import BadUserInput

SECRET = b"k" * 48
BASE_URL = "https://mc.example"
SECTIONS = ("what_changed", "why_it_matters", "before_vs_now", "what_didnt_change")
SECTION_TITLES = ("What changed", "Why it matters", "Before vs now", "What didn't change")


def make_alert(ticker: str = "AAPL", **overrides: Any) -> DigestAlert:
    values: dict[str, Any] = {
        "alert_id": uuid4(),
        "ticker": ticker,
        "stock_name": f"{ticker} Inc.",
        "alert_type": "trend_break",
        "as_of": dt.date(2024, 5, 3),
        "headline": f"{ticker} broke below its 200-day average",
        "what_changed": f"{ticker} closed at 170.00, 2.5% below its 200-day average of 174.35.",
        "why_it_matters": f"For {ticker} the long-run trend has turned down after a year up.",
        "before_vs_now": f"{ticker} was 4.1% above the average on 2024-04-01; now 2.5% below.",
        "what_didnt_change": f"{ticker} valuation stays in its usual range; EPS still rising.",
        "created_at": dt.datetime(2024, 5, 3, 22, 0, tzinfo=dt.UTC),
    }
    values.update(overrides)
    return DigestAlert(**values)


def digest(alerts: list[DigestAlert], to: str = "Ann <ann@example.com>") -> EmailMessage:
    token = unsubscribe_token(UUID(int=7), SECRET)
    return build_digest(
        to=to,
        sender="Material Changes <alerts@mc.example>",
        alerts=alerts,
        public_base_url=BASE_URL + "/",
        unsubscribe_url=unsubscribe_url(BASE_URL, token),
    )


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    """Plain-text and HTML bodies, each with whitespace runs collapsed."""
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return " ".join(text.get_content().split()), " ".join(html.get_content().split())


# --- a real SMTP server -----------------------------------------------------------------


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and a client context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return Tls(server, client)


def authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"p@ss:w/rd")
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


# --- rendering --------------------------------------------------------------------------


def test_one_alert_subject_is_its_headline() -> None:
    assert digest([make_alert("NVDA")])["Subject"] == "NVDA broke below its 200-day average"


def test_several_alerts_subject_counts_and_names_sorted_unique_tickers() -> None:
    tickers = ["MSFT", "AAPL", "TSLA", "AAPL", "NVDA"]
    message = digest([make_alert(t) for t in tickers])
    assert message["Subject"] == "5 material changes: AAPL, MSFT and 2 more"
    assert digest([make_alert(t) for t in ("MSFT", "AAPL")])["Subject"] == (
        "2 material changes: AAPL and MSFT"
    )


def test_digest_has_both_parts_every_section_and_the_footer() -> None:
    alerts = [make_alert("AAPL"), make_alert("BRK.B", alert_type="valuation_regime_change")]
    text, html = parts(digest(alerts))
    for body in (text, html):
        for alert in alerts:
            assert alert.headline in body
            for section in SECTIONS:
                assert getattr(alert, section) in body
            assert "as of 2024-05-03" in body
        assert "not investment advice" in body
        assert f"{BASE_URL}/unsubscribe?token=" in body
        assert f"{BASE_URL}/stocks/AAPL" in body
        assert f"{BASE_URL}/stocks/BRK.B" in body
    for title in SECTION_TITLES:
        assert title in text
        assert title.replace("'", "&rsquo;") in html


def test_html_part_escapes_markup_and_text_part_keeps_it() -> None:
    evil = make_alert("<script>alert(1)</script>", stock_name="Evil & Co")
    text, html = parts(digest([evil]))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Evil &amp; Co" in html
    assert "<script>alert(1)</script>" in text
    # The ticker is a path segment of the link, quoted rather than escaped.
    assert f"{BASE_URL}/stocks/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in text


def test_digest_headers() -> None:
    message = digest([make_alert()])
    link = re.fullmatch(
        rf"<{BASE_URL}/unsubscribe\?token=([A-Za-z0-9_-]+)>", message["List-Unsubscribe"]
    )
    assert link is not None and verify_unsubscribe_token(link[1], SECRET) == UUID(int=7)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["From"] == "Material Changes <alerts@mc.example>"
    assert message["To"] == "Ann <ann@example.com>"
    assert re.fullmatch(r"<[^@>]+@material-changes\.local>", message["Message-ID"])
    sent = email.utils.parsedate_to_datetime(message["Date"])
    assert abs(sent - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_digest_needs_an_alert() -> None:
    with pytest.raises(ValueError, match="at least one alert"):
        digest([])


def test_from_row_reads_an_alert_history_row() -> None:
    alert = make_alert()
    row = {
        "id": alert.alert_id,
        "ticker": alert.ticker,
        "name": alert.stock_name,
        "alert_type": alert.alert_type,
        "as_of": alert.as_of,
        **{section: getattr(alert, section) for section in SECTIONS},
        "headline": alert.headline,
        "sent_at": alert.created_at,
        "user_id": uuid4(),
    }
    assert DigestAlert.from_row(row) == alert


# --- unsubscribe tokens -----------------------------------------------------------------


def test_unsubscribe_token_round_trip() -> None:
    user = uuid4()
    token = unsubscribe_token(user, SECRET)
    assert re.fullmatch(r"[A-Za-z0-9_-]{70}", token)
    assert verify_unsubscribe_token(token, SECRET) == user
    assert verify_unsubscribe_token(token + "==", SECRET) == user
    assert unsubscribe_url(BASE_URL + "/", token) == f"{BASE_URL}/unsubscribe?token={token}"


def test_unsubscribe_tokens_are_opaque() -> None:
    # The user id must not be readable from a link that mail servers and scanners see.
    user = uuid4()
    tokens = {unsubscribe_token(user, SECRET) for _ in range(3)}
    assert len(tokens) == 3  # a fresh nonce each time: two links of one user do not match
    for token in tokens:
        raw = _raw(token)
        assert user.bytes not in raw and user.hex not in token and str(user) not in token
        for encoded in (base64.urlsafe_b64encode(user.bytes), base64.b64encode(user.bytes)):
            assert encoded.rstrip(b"=").decode()[:12] not in token


def test_unsubscribe_tokens_expire_after_the_configured_days() -> None:
    user = uuid4()
    issued = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    token = unsubscribe_token(user, SECRET, issued_at=issued)
    day_364 = issued + dt.timedelta(days=364)
    day_366 = issued + dt.timedelta(days=366)
    assert verify_unsubscribe_token(token, SECRET, max_age_days=365, now=day_364) == user
    with pytest.raises(ExpiredLink, match="expired"):
        verify_unsubscribe_token(token, SECRET, max_age_days=365, now=day_366)
    with pytest.raises(ExpiredLink):
        verify_unsubscribe_token(token, SECRET, max_age_days=30, now=issued + dt.timedelta(31))


def _swap_last_char(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _flip_byte(token: str, at: int) -> str:
    raw = bytearray(_raw(token))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_swap_last_char, id="forged-tag"),
        pytest.param(lambda t: _flip_byte(t, 14), id="changed-ciphertext"),
        pytest.param(lambda t: _flip_byte(t, 0), id="changed-nonce"),
        pytest.param(lambda t: t[:-1], id="truncated-by-one"),
        pytest.param(lambda t: t[:22], id="id-only"),
        pytest.param(lambda t: t + "AAAA", id="too-long"),
        pytest.param(lambda t: "not a token!", id="garbage"),
        pytest.param(lambda t: t[:-1] + "+", id="standard-alphabet"),
        pytest.param(lambda t: t[:-1] + "é", id="non-ascii"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "A" * 64, id="old-format-length"),
    ],
)
def test_bad_unsubscribe_tokens_are_refused(tamper: Any) -> None:
    token = unsubscribe_token(uuid4(), SECRET)
    with pytest.raises(BadUserInput, match="invalid unsubscribe link"):
        verify_unsubscribe_token(tamper(token), SECRET)


def test_a_token_made_with_another_secret_is_refused() -> None:
    with pytest.raises(BadUserInput, match="invalid unsubscribe link"):
        verify_unsubscribe_token(unsubscribe_token(uuid4(), b"other" * 10), SECRET)


def test_list_unsubscribe_is_sent_raw_not_rfc2047_encoded() -> None:
    # Mail clients look for `<https://…>` itself; a long URL folded at 78 characters used to
    # come out as =?utf-8?q?=3Chttps=3A//…?= and no client showed the one-click button.
    message = digest([make_alert()])
    for data in (message.as_bytes(policy=email.policy.SMTP), flatten_message(message)):
        lines = data.decode("ascii").split("\r\n")
        (header,) = [line for line in lines if line.startswith("List-Unsubscribe:")]
        assert re.fullmatch(
            rf"List-Unsubscribe: <{BASE_URL}/unsubscribe\?token=[A-Za-z0-9_-]{{70}}>", header
        ), header
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
        assert b"=?utf-8?" not in data.split(b"\r\n\r\n", 1)[0]


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


async def test_eml_file_sender_writes_a_parseable_message(tmp_path: Path) -> None:
    outbox = tmp_path / "data" / "outbox"
    sender: EmailSender = EmlFileSender(outbox)
    message = digest([make_alert(), make_alert("MSFT")], to='"Ann O." <ann.o+mc@example.com>')
    await sender.send(message)
    await sender.send(message)

    files = sorted(outbox.iterdir())
    assert len(files) == 2, "no temp files are left next to the messages"
    for path in files:
        assert re.fullmatch(r"\d{8}T\d{6}-ann\.o_mc-[0-9a-f]{8}\.eml", path.name)
        data = path.read_bytes()
        assert b"\r\n" in data
        parsed = parse(data)
        assert parsed["Subject"] == "2 material changes: AAPL and MSFT"
        assert parsed["To"] == message["To"]
        assert parsed["List-Unsubscribe"] == message["List-Unsubscribe"]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = parts(parsed)
        assert "MSFT broke below its 200-day average" in text
        assert "MSFT broke below its 200-day average" in html


async def test_eml_file_sender_failure_is_temporary_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(EmailTemporaryError):
        await EmlFileSender(blocker).send(digest([make_alert()]))
    assert [p.name for p in tmp_path.iterdir()] == ["outbox"]
