"""Mutation resolvers; the user is always the token's subject."""

from __future__ import annotations

from datetime import datetime

import strawberry

from resolvers.context import context_of
from schema.alert import Alert, alert_from_row
from schema.delivery import (
    Delivery,
    WebhookEndpoint,
    WebhookSecret,
    delivery_from_row,
    webhook_from_row,
    webhook_secret_from_row,
)
from schema.inputs import UpdateSettingsInput
from schema.push import PushSubscription, push_subscription_from_row
from schema.user import User, WatchlistItem, user_from_row, watchlist_item_from_row
from services import alerts, users, watchlists
from services.delivery import dispatch, endpoints, outbox, push_subscriptions
from services.delivery.channels import push
from services.users import InvestingStyle


async def resolve_complete_onboarding(
    info: strawberry.Info, investing_style: InvestingStyle, tickers: list[str]
) -> User:
    ctx = context_of(info)
    user_id = await ctx.require_user_id()
    row = await users.complete_onboarding(ctx.pool, user_id, investing_style.value, tickers)
    ctx.remember_user(row)
    return user_from_row(row)


async def resolve_update_settings(info: strawberry.Info, data: UpdateSettingsInput) -> User:
    ctx = context_of(info)
    user_id = await ctx.require_user_id()
    row = await users.update_settings(
        ctx.pool,
        user_id,
        investing_style=data.investing_style.value if data.investing_style else None,
        alerts_enabled=data.alerts_enabled,
        alert_types=[t.value for t in data.alert_types] if data.alert_types is not None else None,
        email_digest=data.email_digest.value if data.email_digest is not None else None,
    )
    ctx.remember_user(row)
    return user_from_row(row)


async def resolve_add_stock(info: strawberry.Info, ticker: str) -> WatchlistItem:
    ctx = context_of(info)
    row = await watchlists.add_stock(ctx.pool, await ctx.require_user_id(), ticker)
    return watchlist_item_from_row(row, ctx)


async def resolve_remove_stock(info: strawberry.Info, ticker: str) -> bool:
    ctx = context_of(info)
    return await watchlists.remove_stock(ctx.pool, await ctx.require_user_id(), ticker)


async def resolve_set_stock_alerts(
    info: strawberry.Info, ticker: str, enabled: bool
) -> WatchlistItem:
    ctx = context_of(info)
    row = await watchlists.set_stock_alerts(ctx.pool, await ctx.require_user_id(), ticker, enabled)
    return watchlist_item_from_row(row, ctx)


async def resolve_mark_alert_opened(info: strawberry.Info, alert_id: str) -> Alert:
    ctx = context_of(info)
    row = await alerts.mark_opened(ctx.pool, await ctx.require_user_id(), alert_id)
    return alert_from_row(row, ctx)


async def resolve_create_webhook(
    info: strawberry.Info, url: str, description: str | None
) -> WebhookSecret:
    ctx = context_of(info)
    row = await endpoints.create(
        ctx.pool,
        await ctx.require_user_id(),
        url,
        description,
        allow_private=ctx.settings.webhook_allow_private,
    )
    return webhook_secret_from_row(row)


async def resolve_delete_webhook(info: strawberry.Info, webhook_id: str) -> bool:
    ctx = context_of(info)
    return await endpoints.delete(ctx.pool, await ctx.require_user_id(), webhook_id)


async def resolve_set_webhook_enabled(
    info: strawberry.Info, webhook_id: str, enabled: bool
) -> WebhookEndpoint:
    ctx = context_of(info)
    row = await endpoints.set_enabled(ctx.pool, await ctx.require_user_id(), webhook_id, enabled)
    return webhook_from_row(row)


async def resolve_rotate_webhook_secret(info: strawberry.Info, webhook_id: str) -> WebhookSecret:
    ctx = context_of(info)
    row = await endpoints.rotate_secret(ctx.pool, await ctx.require_user_id(), webhook_id)
    return webhook_secret_from_row(row)


async def resolve_test_webhook(info: strawberry.Info, webhook_id: str) -> Delivery:
    ctx = context_of(info)
    user_id = await ctx.require_user_id()
    row = await dispatch.send_test_webhook(ctx.pool, user_id, webhook_id, settings=ctx.settings)
    return delivery_from_row(row)


async def resolve_redeliver(info: strawberry.Info, delivery_id: str) -> Delivery:
    ctx = context_of(info)
    row = await outbox.redeliver(ctx.pool, await ctx.require_user_id(), delivery_id)
    return delivery_from_row(row)


async def resolve_register_push_subscription(
    info: strawberry.Info, endpoint: str, p256dh: str, auth: str, user_agent: str | None
) -> PushSubscription:
    ctx = context_of(info)
    push.application_server_key(ctx.settings)  # PUSH_NOT_CONFIGURED before anything is stored
    row = await push_subscriptions.register(
        ctx.pool,
        await ctx.require_user_id(),
        endpoint=endpoint,
        p256dh=p256dh,
        auth=auth,
        user_agent=user_agent,
        allow_private=ctx.settings.webhook_allow_private,
    )
    return push_subscription_from_row(row)


async def resolve_delete_push_subscription(info: strawberry.Info, subscription_id: str) -> bool:
    ctx = context_of(info)
    return await push_subscriptions.delete(ctx.pool, await ctx.require_user_id(), subscription_id)


async def resolve_mark_all_alerts_opened(info: strawberry.Info, before: datetime | None) -> int:
    ctx = context_of(info)
    return await alerts.mark_all_opened(ctx.pool, await ctx.require_user_id(), before)
