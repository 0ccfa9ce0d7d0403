"""One-click unsubscribe (RFC 8058) from the links in alert emails: POST turns email off.

GET only shows a page with a button, because mail scanners open links on their own; the
`List-Unsubscribe-Post` one-click request and that button both POST.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from services import users
from services.delivery import email
from services.delivery.channels.email import email_link_secret
from services.delivery.outbox import EmailDigest
from services.errors import BadUserInput
from services.settings import Settings

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem">
<h1 style="font-size: 1.4rem">{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


def unsubscribe_routes(settings: Settings, pool: Callable[[], asyncpg.Pool]) -> list[Route]:
    """GET (a confirmation page) and POST (email off) on /unsubscribe?token=…."""

    def verified(request: Request) -> tuple[str, UUID | Response]:
        """The token and its user, or the page that refuses it."""
        token = request.query_params.get("token", "")
        secret = email_link_secret(settings)
        if secret is None:
            return token, _page("Unsubscribe unavailable", "<p>Links are not configured.</p>", 503)
        try:
            return token, email.verify_unsubscribe_token(
                token, secret, max_age_days=settings.unsubscribe_token_days
            )
        except email.ExpiredLink:
            return token, _page(
                "This link has expired",
                "<p>Use the unsubscribe link of a recent alert email, or turn email off in "
                "your settings.</p>",
                400,
            )
        except BadUserInput:
            return token, _page(
                "This link is not valid",
                "<p>Use the unsubscribe link of a recent alert email, or turn email off in "
                "your settings.</p>",
                400,
            )

    async def confirm(request: Request) -> Response:
        token, user = verified(request)
        if isinstance(user, Response):
            return user
        return _page(
            "Stop alert emails?",
            '<form method="post" action="/unsubscribe?token='
            + escape(token, quote=True)
            + '"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            "<p>You will get no more alert emails. Webhooks and the app are not affected.</p>"
            '<button type="submit">Unsubscribe</button></form>',
        )

    async def unsubscribe(request: Request) -> Response:
        _, user = verified(request)
        if isinstance(user, Response):
            return user
        await users.set_email_digest(pool(), user, EmailDigest.OFF)
        return _page(
            "You are unsubscribed",
            "<p>No more alert emails will be sent. You can turn them on again in your "
            "settings.</p>",
        )

    return [
        Route("/unsubscribe", confirm, methods=["GET"]),
        Route("/unsubscribe", unsubscribe, methods=["POST"]),
    ]
