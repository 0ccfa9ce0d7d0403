"""Email addresses a message may be sent to: exactly one mailbox, nothing a header could split."""

from __future__ import annotations

import re

from services.errors import BadUserInput

MAX_ADDRESS_LENGTH = 254
MAX_DOMAIN_LENGTH = 253

# RFC 5322 dot-atom text: letters, digits and these marks; no spaces, commas, quotes, brackets,
# angle brackets or control characters, so the address can never become two or a new header.
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def parse_email_address(raw: str) -> str:
    """`raw` as one deliverable address (domain lower-cased, in IDNA), or BadUserInput."""
    invalid = BadUserInput("email must be one address like name@example.com")
    if not isinstance(raw, str):
        raise invalid
    address = raw.strip()
    if not address or len(address) > MAX_ADDRESS_LENGTH or address.count("@") != 1:
        raise invalid
    local, domain = address.split("@")
    if len(local) > 64 or not _LOCAL_RE.fullmatch(local):
        raise invalid
    return f"{local}@{_domain(domain, invalid)}"


def storable_email(raw: object) -> str | None:
    """The address to store for a sign-in's email claim: valid, else None (no email)."""
    if not isinstance(raw, str):
        return None
    try:
        return parse_email_address(raw)
    except BadUserInput:
        return None


def _domain(domain: str, invalid: BadUserInput) -> str:
    if any(ch.isspace() or not ch.isprintable() for ch in domain):
        raise invalid
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise invalid from None
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > MAX_DOMAIN_LENGTH
        or len(labels) < 2
        or not all(_LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise invalid
    return ascii_domain
