"""The tax part of a paid subscription invoice, and how it is posted.

Stripe reports an invoice's taxes in ``total_taxes`` (the pinned API version: a list of
``{amount, tax_behavior, taxable_amount, ...}``); older versions sent
``total_tax_amounts`` (``{amount, inclusive, tax_rate}``) and ``tax`` (the sum). Inclusive
and exclusive taxes alike are part of ``total``, so both are money collected for a tax
authority, not revenue: they go to the platform's ``tax_collected`` account and revenue
(``sales``) gets the rest.
"""

from __future__ import annotations

from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.money import proportional_part
from payments_api.stripe.billing_objects import Invoice, TaxAmount


def _amounts(entries: list[TaxAmount] | None) -> int | None:
    return None if entries is None else sum(entry.amount for entry in entries)


def invoice_tax(invoice: Invoice) -> int:
    """The invoice's whole tax in minor units (0 when it carries none)."""
    for found in (_amounts(invoice.total_taxes), _amounts(invoice.total_tax_amounts)):
        if found is not None:
            return found
    return invoice.tax or 0


def paid_tax(invoice: Invoice, amount_paid: int) -> int:
    """The tax in what was paid. When the customer's balance or a credit note covered part
    of the total, the charge carries the tax in proportion (largest remainder, exact)."""
    tax = invoice_tax(invoice)
    total = invoice.total
    if tax <= 0 or amount_paid <= 0:
        return 0
    if total <= amount_paid:
        return min(tax, amount_paid)
    return proportional_part(amount_paid, total, min(tax, total), 0)


def refund_tax_share(amount: int, paid: int, tax: int, refunded_before: int) -> int:
    """The tax a refund of ``amount`` gives back, by cumulative largest remainder: refunds
    in parts give back exactly the invoice's tax once the whole is refunded."""
    if tax <= 0 or paid <= 0:
        return 0
    before = min(refunded_before, paid - amount)
    return proportional_part(amount, paid, tax, before)


def revenue_postings(amount: int, tax: int, currency: str) -> list[ledger_service.PostingSpec]:
    """Revenue and tax (credit side) of ``amount`` reaching Stripe; negate for a refund."""
    postings = [
        ledger_service.PostingSpec(
            ledger_service.AccountRef.platform(AccountKind.sales, currency), amount - tax
        )
    ]
    if tax:
        postings.append(
            ledger_service.PostingSpec(
                ledger_service.AccountRef.platform(AccountKind.tax_collected, currency), tax
            )
        )
    return postings
