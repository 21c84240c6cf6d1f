"""Wallet debits: the platform's backend (role ``service``) charging a user's wallet for
usage, never below zero."""
