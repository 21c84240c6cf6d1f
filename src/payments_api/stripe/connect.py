"""Connect Express: accounts, account links, login links, transfers, payouts."""

from __future__ import annotations

from payments_api.stripe.base import GatewayBase


class ConnectCalls(GatewayBase):
    pass
