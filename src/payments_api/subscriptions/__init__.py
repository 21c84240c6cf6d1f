"""Subscriptions: plans (Stripe Products and recurring Prices), subscribers, invoices."""
