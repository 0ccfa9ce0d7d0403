"""What a delivery channel is: the one interface the outbox and the deliverer work through.

A channel says which alerts it queues for whom (an SQL branch of the outbox insert), how its
due rows are claimed, how a claimed batch is rendered and sent, and what an outcome does to
its target (a webhook endpoint, a user's email setting, a push subscription). The outbox and
the `deliver` job run one claim, attempt, retry and record loop for every channel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from services.db import Connection, Executor
from services.settings import Settings

# A row may be claimed when nobody holds a lease on it, or the lease ran out.
LEASE_FREE = "(d.locked_until IS NULL OR d.locked_until < now())"

# What a webhook body and an email section are built from: alert_history `a` joined with its
# entity `e`.
ALERT_FIELDS = """a.id, a.alert_type, a.as_of, a.previous_state, a.new_state, a.headline,
    a.what_changed, a.why_it_matters, a.before_vs_now, a.what_didnt_change, a.sent_at,
    e.ticker, e.name"""

# Each channel's `enqueue_sql` is one SELECT over the CTE `a` (columns id, user_id: the new
# alerts) producing (user_id, alert_id, channel, <target column>, next_attempt_at).
ENQUEUE_COLUMNS = ("user_id", "alert_id", "channel", "next_attempt_at")


def claim_statement(due: str) -> str:
    """Lease the rows that the CTE `due` (ids, locked FOR UPDATE SKIP LOCKED) selects.

    Parameters: $1 the worker, $2 the lease in seconds; the CTE may use $3 and later.
    """
    return f"""
WITH {due}
UPDATE deliveries x
SET locked_by = $1, locked_until = now() + make_interval(secs => $2), updated_at = now()
WHERE x.id = ANY (ARRAY(SELECT id FROM due))
RETURNING x.id
"""  # noqa: S608 - `due` is one of the channels' constant texts


class Unrenderable(Exception):
    """A claimed batch cannot become a message (a bad stored address): fail it, nothing else."""


@dataclass(frozen=True)
class Outcome:
    """What one send of a batch came to.

    Not delivered: retried on the schedule unless `permanent`; `retry_after` (seconds, from a
    receiver's Retry-After) pushes the next attempt later than the schedule would; `target_gone`
    asks the channel to retire its target (disable an endpoint, delete a subscription).
    """

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    target_gone: bool = False


class Session(ABC):
    """A channel's open senders for one pass (an HTTP client, an SMTP sender, keys)."""

    @abstractmethod
    def render(self, batch: Sequence[Any], now: datetime) -> Any:
        """The message for a claimed batch; Unrenderable when it cannot be built."""

    @abstractmethod
    async def send(self, batch: Sequence[Any], message: Any, now: datetime) -> Outcome:
        """Send one rendered message; never raises for the receiver's or the network's failures."""


class Channel(ABC):
    """One way a delivery leaves: its queueing SQL, claim SQL, sender and target effects."""

    # What deliveries.channel stores, lower case; the GraphQL enum member is its upper case.
    name: ClassVar[str]
    # The deliveries column naming this channel's target row, or None (email's target is the user).
    target_column: ClassVar[str | None] = None
    # One SELECT branch of the outbox insert (see ENQUEUE_COLUMNS), the target as 4th column.
    enqueue_sql: ClassVar[str]
    # claim_statement(...) over this channel's due rows: $3 is the batch size.
    claim_sql: ClassVar[str]
    # The same for one given delivery ($3 its id), for a send the caller waits on; or None.
    claim_one_sql: ClassVar[str | None] = None
    # What a claimed delivery needs to be sent, for the ids in $1, in sending order.
    work_sql: ClassVar[str]
    # Batches sent at once in one pass; email keeps one SMTP conversation at a time.
    send_concurrency: ClassVar[int] = 10
    # Said once at start by a process that queues or sends nothing for this channel.
    not_configured: ClassVar[str] = ""

    def configured(self, settings: Settings) -> bool:
        """Whether this process can send on the channel: alerts are queued only for those."""
        return True

    def batches(self, rows: Sequence[Any]) -> list[list[Any]]:
        """How claimed rows become messages: one per row unless a channel groups them."""
        return [[row] for row in rows]

    def session(self, settings: Settings) -> AbstractAsyncContextManager[Session | None]:
        """The senders for one pass; None when this process cannot send (said at start)."""
        return _no_session()

    async def delivered(self, conn: Connection, rows: Sequence[Any]) -> None:
        """What a success does to the targets of `rows` (still held by this worker)."""
        return None

    async def failed(self, conn: Connection, batch: Sequence[Any], outcome: Outcome) -> bool:
        """What a failed attempt does to the batch's target; True when it retired the target."""
        return False

    async def redeliver_refusal(self, db: Executor, row: Any) -> str | None:
        """Why a FAILED delivery cannot be sent again now (a disabled target), or None."""
        return None


@asynccontextmanager
async def _no_session() -> AsyncIterator[Session | None]:
    yield None
