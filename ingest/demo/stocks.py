"""The demo's 30 synthetic stocks and the story each one is designed to tell.

The demo user watches the ten `watched=True` stocks. Its states are set silently on
BASELINE, then the evaluator replays REPLAY_DATES, where the stories below turn into real
alerts (or, for the quiet ones, deliberately do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

TICKER_SUFFIX = ".DEMO"
NAME_SUFFIX = " (demo)"
SECTOR_PREFIX = "Synthetic demo — "

BASELINE = date(2025, 3, 31)
REPLAY_DATES = (date(2025, 4, 30), date(2025, 5, 30), date(2025, 6, 30))
Q1_2025 = date(2025, 3, 31)  # reported (usable) from 2025-05-15: inside the replay window

Knots = tuple[tuple[date, float], ...]


@dataclass(frozen=True)
class DemoStock:
    """Parameters of one synthetic stock (see ingest/demo/csv_files.py for the model)."""

    root: str
    company: str
    theme: str
    story: str
    watched: bool = False
    listed: date = date(2015, 1, 2)
    reported_years_before_listing: float = 3.0
    exchange: str = "Q"
    is_etf: bool = False
    has_fundamentals: bool = True
    multiple: float = 12.0  # central EV/EBITDA (EV/Sales when ev_sales)
    swing: float = 0.22  # log amplitude of the slow valuation cycle
    cycle_years: float = 3.3
    cycle_phase: float = (
        0.0  # turns at BASELINE: 0 rising mid, .25 peak, .5 falling mid, .75 trough
    )
    moves: Knots = ()  # multiplicative, log-linear between knots: the story's re-rating
    growth: Knots = ((date(2012, 12, 31), 0.08),)  # (since, annual growth of the base flow)
    base_quarter: float = 250e6  # quarterly EBITDA (sales when ev_sales) at the start
    ev_sales: bool = False  # loss-making: valued on EV/Sales
    pre_revenue: bool = False  # no sales at all: no valuation metric
    eps_shocks: Knots = ()  # (quarter end, factor on that quarter's net income)
    split: tuple[date, int, int] | None = None  # (ex_date, to_factor, for_factor)
    # Quarterly dividend per share in today's share basis (raised 5% each February), None for
    # none; `dividend_moves` (first ex-date, factor) scale it from then on; specials are
    # (ex_date, amount) one-offs.
    dividend: float | None = None
    dividend_moves: Knots = ()
    special_dividends: tuple[tuple[date, float], ...] = ()
    shares: float = 400e6
    noise: float = 0.005
    volume: int = 2_000_000
    anchor: date = BASELINE

    @property
    def ticker(self) -> str:
        return self.root + TICKER_SUFFIX

    @property
    def name(self) -> str:
        return self.company + NAME_SUFFIX

    @property
    def sector(self) -> str:
        return SECTOR_PREFIX + self.theme

    def eps_shock(self, quarter_end: date) -> float:
        return dict(self.eps_shocks).get(quarter_end, 1.0)

    def debt_and_cash(self) -> tuple[float, float]:
        """Constant net debt sized on the starting business (EV = cap + debt − cash)."""
        annual = 4 * abs(self.base_quarter)
        return 0.6 * annual, 0.25 * annual


def d(text: str) -> date:
    return date.fromisoformat(text)


WATCHED = (
    DemoStock(
        "ORBT",
        "Orbital Freight Systems",
        "Industrials",
        "Trend break down: rallies into March 2025, then sells off ~20% in April "
        "(ABOVE_200DMA → BELOW_200DMA alert).",
        watched=True,
        multiple=13.0,
        swing=0.1,
        # Re-rated up in 2018-19, so a 20% drop in 2025 is still mid-range, not cheap.
        moves=(
            (d("2018-06-30"), 0.72),
            (d("2019-06-30"), 1.0),
            (d("2025-04-01"), 1.0),
            (d("2025-04-25"), 0.8),
        ),
    ),
    DemoStock(
        "LMFD",
        "Lumenfield Solar",
        "Utilities",
        "Trend break up: slides through late 2024, then recovers ~20% from April 2025 "
        "(BELOW_200DMA → ABOVE_200DMA alert).",
        watched=True,
        multiple=11.0,
        cycle_phase=0.55,
        moves=((d("2025-04-07"), 1.0), (d("2025-05-20"), 1.2)),
    ),
    DemoStock(
        "BRKW",
        "Brookwell Bancorp",
        "Financials",
        "Enters its cheap zone: the multiple falls below its 10-year range in May 2025 while "
        "earnings keep growing (NORMAL → CHEAP, plus a trend break).",
        watched=True,
        multiple=12.0,
        swing=0.15,
        moves=((d("2025-04-20"), 1.0), (d("2025-05-28"), 0.66)),
        growth=((d("2012-12-31"), 0.10),),
    ),
    DemoStock(
        "HVNT",
        "Harvest & Vine Foods",
        "Consumer Staples",
        "Enters its expensive zone: a steady uptrend re-rates above its 10-year range "
        "(NORMAL → EXPENSIVE, trend unchanged).",
        watched=True,
        multiple=10.0,
        swing=0.15,
        cycle_phase=0.0,
        moves=((d("2025-03-31"), 1.0), (d("2025-06-20"), 1.4)),
    ),
    DemoStock(
        "QNTX",
        "Quantix Semiconductor",
        "Technology",
        "Earnings inflection down: a write-down halves Q1 2025 EPS, reported mid-May, and "
        "the board halves the May dividend (IMPROVING → DETERIORATING, PAYING → CUT; "
        "valuation and trend unchanged).",
        watched=True,
        dividend=0.40,
        dividend_moves=((d("2025-05-01"), 0.5),),
        multiple=15.0,
        cycle_phase=-0.05,
        growth=((d("2012-12-31"), 0.12),),
        eps_shocks=((Q1_2025, 0.2),),
    ),
    DemoStock(
        "CDNL",
        "Cardinal Health Partners",
        "Health Care",
        "Earnings inflection up: two years of shrinking profits, then a strong Q1 2025 "
        "(DETERIORATING → IMPROVING).",
        watched=True,
        multiple=9.0,
        swing=0.12,
        cycle_phase=-0.1,
        growth=((d("2012-12-31"), 0.06), (d("2022-09-30"), -0.08)),
        eps_shocks=((Q1_2025, 2.2),),
    ),
    DemoStock(
        "STDY",
        "Steadfast Compounders",
        "Industrials",
        "Quiet compounder: normal valuation, above its 200-day average, earnings improving, "
        "a one-off special dividend in May on top of the regular one — nothing material "
        "happens, so no alert.",
        watched=True,
        dividend=0.25,
        special_dividends=((d("2025-05-28"), 2.50),),
        multiple=14.0,
        swing=0.12,
        cycle_phase=-0.07,
        growth=((d("2012-12-31"), 0.11),),
    ),
    DemoStock(
        "SPLT",
        "Splitwell Software",
        "Technology",
        "4-for-1 split on 2025-05-12: raw prices and the dividend per share drop 75% "
        "overnight, the evaluator split-adjusts, and no alert fires.",
        watched=True,
        multiple=18.0,
        swing=0.12,
        cycle_phase=-0.07,
        growth=((d("2012-12-31"), 0.14),),
        split=(d("2025-05-12"), 4, 1),
        shares=100e6,
        dividend=0.08,
    ),
    DemoStock(
        "NWCO",
        "Newcomer Robotics",
        "Technology",
        "Listed in March 2023: under 36 month-ends of history, so valuation is UNKNOWN "
        "while trend and earnings are known.",
        watched=True,
        listed=d("2023-03-01"),
        multiple=16.0,
        swing=0.1,
        growth=((d("2012-12-31"), 0.25),),
        base_quarter=80e6,
        shares=150e6,
    ),
    DemoStock(
        "VTXG",
        "Vortex Genomics",
        "Health Care",
        "Loss-making grower valued on EV/Sales: leaves its expensive zone after a 20% drop "
        "(EXPENSIVE → NORMAL, plus a trend break).",
        watched=True,
        ev_sales=True,
        multiple=6.0,
        swing=0.2,
        cycle_phase=0.25,
        moves=((d("2025-04-01"), 1.0), (d("2025-05-15"), 0.8)),
        growth=((d("2012-12-31"), 0.22),),
        base_quarter=40e6,
        shares=200e6,
    ),
)

OTHERS = (
    DemoStock(
        "TRAP",
        "Trapline Retail",
        "Consumer Discretionary",
        "Value trap: CHEAP, BELOW_200DMA, DETERIORATING.",
        multiple=8.0,
        moves=((d("2024-09-30"), 1.0), (d("2025-05-30"), 0.6)),
        growth=((d("2012-12-31"), 0.04), (d("2023-06-30"), -0.10)),
    ),
    DemoStock(
        "PHNT",
        "Phoenix Turnaround Co",
        "Industrials",
        "Turnaround: earnings surge faster than the price, CHEAP yet ABOVE_200DMA, IMPROVING.",
        multiple=11.0,
        swing=0.12,
        moves=((d("2023-12-31"), 1.0), (d("2025-06-30"), 0.62)),
        growth=((d("2012-12-31"), 0.03), (d("2023-06-30"), 0.45)),
    ),
    DemoStock(
        "MMTM",
        "Momentum Cloud",
        "Technology",
        "Momentum darling: EXPENSIVE, ABOVE_200DMA, IMPROVING.",
        multiple=20.0,
        moves=((d("2024-06-30"), 1.0), (d("2025-06-30"), 1.6)),
        growth=((d("2012-12-31"), 0.18),),
    ),
    DemoStock(
        "FADE",
        "Fading Media Group",
        "Communication Services",
        "Expensive on shrinking earnings and already falling: EXPENSIVE, BELOW_200DMA, "
        "DETERIORATING.",
        multiple=9.0,
        swing=0.1,
        moves=((d("2024-03-31"), 1.0), (d("2025-06-30"), 1.3)),
        growth=((d("2012-12-31"), 0.05), (d("2023-09-30"), -0.5)),
    ),
    DemoStock(
        "DPSK",
        "Dipstick Energy",
        "Energy",
        "Healthy business in a pullback: NORMAL, BELOW_200DMA, IMPROVING.",
        multiple=7.0,
        cycle_phase=0.45,
        moves=((d("2025-03-01"), 1.0), (d("2025-06-30"), 0.9)),
        growth=((d("2012-12-31"), 0.09),),
    ),
    DemoStock(
        "IDXF",
        "Index Fund Tracker ETF",
        "Funds",
        "An ETF: prices only, no fundamentals, so valuation and earnings are UNKNOWN.",
        is_etf=True,
        exchange="P",
        has_fundamentals=False,
        multiple=1.0,
        swing=0.08,
        growth=((d("2012-12-31"), 0.07),),
        base_quarter=1e9,
    ),
    DemoStock(
        "FRLB",
        "Freshly Listed Labs",
        "Health Care",
        "IPO in January 2025: fewer than 200 trading days, so every state is UNKNOWN.",
        listed=d("2025-01-15"),
        reported_years_before_listing=1.0,
        multiple=20.0,
        swing=0.05,
        growth=((d("2012-12-31"), 0.3),),
        base_quarter=30e6,
        shares=80e6,
    ),
    DemoStock(
        "PREV",
        "Prevenio Biotech",
        "Health Care",
        "Pre-revenue biotech: no sales and negative EBITDA, so no valuation metric (UNKNOWN).",
        pre_revenue=True,
        multiple=25.0,
        swing=0.25,
        growth=((d("2012-12-31"), 0.10),),
        base_quarter=20e6,
        shares=120e6,
    ),
)


def _filler(i: int, root: str, company: str, theme: str, phase: float, growth: float) -> DemoStock:
    """A plain stock at a chosen point of its valuation cycle (variety for search/popular)."""
    return DemoStock(
        root,
        company,
        theme,
        f"Ordinary stock at cycle position {phase:.2f} with {growth:.0%} growth.",
        multiple=8.0 + i,
        cycle_phase=phase,
        growth=((d("2012-12-31"), growth),),
        base_quarter=(60 + 25 * i) * 1e6,
        shares=(80 + 20 * i) * 1e6,
        exchange="N" if i % 2 else "Q",
    )


FILLERS = (
    _filler(0, "ACME", "Acme Anvils", "Industrials", 0.30, 0.06),
    _filler(1, "BLUF", "Bluff Point Insurance", "Financials", 0.80, 0.05),
    _filler(2, "CDRX", "Cedar Rx Pharmacies", "Health Care", 0.55, 0.07),
    _filler(3, "DYNM", "Dynamo Power Tools", "Industrials", 0.10, 0.09),
    _filler(4, "ECVT", "Echo Valley Telecom", "Communication Services", 0.70, 0.03),
    _filler(5, "FJRD", "Fjord Shipping", "Industrials", 0.20, -0.02),
    _filler(6, "GLCR", "Glacier Water Co", "Utilities", 0.95, 0.04),
    _filler(7, "HRBR", "Harbor Logistics", "Industrials", 0.40, 0.08),
    _filler(8, "IRSO", "Iris Optics", "Technology", 0.65, 0.13),
    _filler(9, "JNAP", "Juno Apparel", "Consumer Discretionary", 0.85, 0.06),
    _filler(10, "KELP", "Kelp Farms", "Consumer Staples", 0.25, 0.10),
    _filler(11, "LNXS", "Lynx Security", "Technology", 0.50, 0.15),
)

DEMO_STOCKS: tuple[DemoStock, ...] = WATCHED + OTHERS + FILLERS
