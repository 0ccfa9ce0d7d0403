"""The delivery channels: one list, from which the GraphQL enum and the outbox SQL follow."""

from __future__ import annotations

from enum import StrEnum

from services.delivery.channel import Channel
from services.delivery.channels.email import EmailChannel
from services.delivery.channels.push import PushChannel
from services.delivery.channels.webhook import WebhookChannel
from services.settings import Settings

# In sending order: a deliverer's pass drains them one after the other.
CHANNELS: tuple[Channel, ...] = (WebhookChannel(), EmailChannel(), PushChannel())


class DeliveryChannel(StrEnum):
    """Where a delivery goes; the value is what deliveries.channel stores (one per channel)."""

    WEBHOOK = WebhookChannel.name
    EMAIL = EmailChannel.name
    PUSH = PushChannel.name


_BY_NAME = {channel.name: channel for channel in CHANNELS}
if set(_BY_NAME) != set(DeliveryChannel):
    raise RuntimeError("DeliveryChannel must have one member per channel in CHANNELS")

# Every channel: what enqueue_for_alerts queues unless told otherwise.
ALL_CHANNELS: frozenset[DeliveryChannel] = frozenset(DeliveryChannel)


def channel_of(name: str) -> Channel:
    """The channel that stores `name` in deliveries.channel."""
    return _BY_NAME[name]


def configured_channels(settings: Settings) -> frozenset[DeliveryChannel]:
    """The channels this process can send on: the ones alerts are queued for."""
    return frozenset(DeliveryChannel(c.name) for c in CHANNELS if c.configured(settings))
