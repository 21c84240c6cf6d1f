"""Every ledger account kind, in one place.

Sign convention: one signed column, every transaction sums to zero per currency, and an
account's balance is the sum of its postings. User accounts and revenue accounts are
positive when they hold value for their owner. Accounts that mirror money the platform
*has* (``stripe_balance``) are their counterparty and read negative: a top-up of 10.00
posts +1000 to the user's ``available`` and -1000 to ``stripe_balance``.

| kind | owner | may go negative | meaning |
|---|---|---|---|
| available | user | only via a dispute | spendable and withdrawable money of the user |
| escrow | user | no | held for a job (offer price plus platform fee) |
| withdrawing | user | no | on its way to the user's connected account |
| refunding | user | no | cashed out to the customer's cards, until Stripe confirms each refund |
| authorized | user | no | memo: held on the customer's card for an escrow, not captured |
| platform_fees | platform | yes | the platform's revenue (commission, service fees) |
| stripe_balance | platform | yes | mirror of the platform's balance at Stripe (sign inverted) |
| processing_fees | platform | yes | Stripe's processing fees borne by the platform |
| disputes | platform | yes | money taken back by card disputes, and dispute fees |
| adjustments | platform | yes | counterparty of manual corrections by admins |
| sales | platform | yes | revenue from catalog orders (purpose `order`) |
| card_authorizations | platform | yes | memo counterparty of ``authorized`` (sign inverted) |
| tax_collected | platform | yes | tax on subscription invoices, owed to tax authorities |

``authorized`` and ``card_authorizations`` are off-balance memo accounts: they only
ever post against each other (an authorization, then its exact reversal when it is
captured, released or expires), so they never touch the money in ``stripe_balance``,
``available`` or ``escrow``; captured money enters through the normal funding flow.

``processing_fees`` is a cost and reads negative as it grows: a Stripe fee F on a
pay-in posts +F to ``stripe_balance`` (less money at Stripe) and -F to
``processing_fees``.

Platform accounts are sharded: their cached balance is split over several rows that
are summed on read, so concurrent settlements of different users credit different rows
instead of queueing on one (see ``LedgerService``).
"""

from __future__ import annotations

from enum import StrEnum


class AccountKind(StrEnum):
    available = "available"
    escrow = "escrow"
    withdrawing = "withdrawing"
    refunding = "refunding"
    platform_fees = "platform_fees"
    stripe_balance = "stripe_balance"
    processing_fees = "processing_fees"
    disputes = "disputes"
    adjustments = "adjustments"
    sales = "sales"
    authorized = "authorized"
    card_authorizations = "card_authorizations"
    tax_collected = "tax_collected"


USER_KINDS: frozenset[AccountKind] = frozenset(
    {
        AccountKind.available,
        AccountKind.escrow,
        AccountKind.withdrawing,
        AccountKind.refunding,
        AccountKind.authorized,
    }
)
PLATFORM_KINDS: frozenset[AccountKind] = frozenset(set(AccountKind) - USER_KINDS)

# Rows a platform account's cached balance is spread over. 32 keeps collisions rare at
# 32 concurrent settlements (SKIP LOCKED picks a free row anyway) and reads cheap.
PLATFORM_SHARDS = 32


class CauseType(StrEnum):
    """What caused a ledger transaction; with the cause key it makes a cause unique."""

    stripe_event = "stripe_event"
    escrow = "escrow"
    withdrawal = "withdrawal"
    admin_adjustment = "admin_adjustment"
    reversal = "reversal"
    system = "system"
