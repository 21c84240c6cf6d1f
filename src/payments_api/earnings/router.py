from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from payments_api import routes
from payments_api.deps import PrincipalDep, state_of
from payments_api.earnings import errors as earnings_errors
from payments_api.earnings.schemas import EarningsList
from payments_api.earnings.service import Clock, EarningsReader
from payments_api.kit import pagination
from payments_api.kit.clock import utcnow
from payments_api.kit.dates import IsoDate
from payments_api.money import Currency
from payments_api.problems import problem_responses

router = APIRouter(tags=["earnings"])


async def get_clock() -> Clock:
    """The clock of the earnings summary (tests override it to freeze time)."""
    return utcnow


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_earnings_reader(request: Request, clock: ClockDep) -> EarningsReader:
    # The settings are read off the request, not through SettingsDep: each dependency
    # FastAPI solves is a share of the page's CPU (bench/README.md). No SessionDep: the
    # page is read on a pooled connection without an ORM session.
    state = state_of(request)
    return EarningsReader.pooled(
        state.sessionmaker, now=clock, default_timezone=state.settings.earnings_default_timezone
    )


EarningsReaderDep = Annotated[EarningsReader, Depends(get_earnings_reader)]


class EarningsFilters(routes.Page):
    currency: Currency | None
    project_id: str | None
    date_from: date | None
    date_to: date | None
    tz: str | None


EarningsPage = Annotated[
    EarningsFilters,
    routes.cursor_page(
        "Entry id to continue after (exclusive).",
        currency=Annotated[Currency | None, Query(description="Only this currency.")],
        project_id=Annotated[str | None, Query(max_length=255, description="Only this project.")],
        date_from=Annotated[
            IsoDate | None, Query(description="First calendar day (inclusive, in `tz`).")
        ],
        date_to=Annotated[
            IsoDate | None, Query(description="Last calendar day (inclusive, in `tz`).")
        ],
        tz=Annotated[
            str | None,
            Query(
                max_length=64,
                description="IANA time zone of the summary windows and the date filters; "
                "defaults to PAYMENTS_EARNINGS_DEFAULT_TIMEZONE (UTC).",
                examples=["Europe/Berlin"],
            ),
        ],
    ),
]


@router.get(
    "/api/v1/me/earnings",
    summary="What the caller earned as a payee, with a summary",
    description=(
        "Per-job entries with only the payee's take (never the customer's price or any "
        "fee), newest first, and per currency the sums of today, the last 7 days, the "
        "last 30 days and all time, over calendar days of `tz`."
    ),
    responses=problem_responses(
        401,
        earnings_errors.InvalidDateRange,
        earnings_errors.InvalidTimezone,
        pagination.InvalidCursor,
    ),
)
async def list_earnings(
    principal: PrincipalDep, reader: EarningsReaderDep, page: EarningsPage
) -> EarningsList:
    # The caller's user row is read (and provisioned on first sight) by the same
    # statement as the entries and the summary: see EarningsReader.page_for.
    return await reader.page_for(principal, **page)
