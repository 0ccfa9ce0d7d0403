"""GraphQL input types."""

from __future__ import annotations

import strawberry

from services.delivery.outbox import EmailDigest
from services.market.signals.registry import AlertType
from services.users import InvestingStyle


@strawberry.input(description="Omitted (or null) fields keep their current value.")
class UpdateSettingsInput:
    investing_style: InvestingStyle | None = None
    alerts_enabled: bool | None = None
    alert_types: list[AlertType] | None = strawberry.field(
        default=None, description="The alert types to receive; [] mutes every type."
    )
    email_digest: EmailDigest | None = strawberry.field(
        default=None, description="OFF cancels email still queued; others reschedule it."
    )
