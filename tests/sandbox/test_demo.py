"""``payments-api demo``: the scripted marketplace scenario, run against the app."""

from __future__ import annotations

import asyncio

from payments_api.events.delivery import DeliveryService
from payments_sandbox.demo import Demo
from tests.sandbox.helpers import Sandbox


class TestDemo:
    async def test_the_scenario_ends_with_the_specified_balances(self, sandbox: Sandbox) -> None:
        output: list[str] = []
        # The outgoing events go over real HTTP to the demo's receiver on loopback.
        sandbox.mock.route(host="127.0.0.1").pass_through()
        deliveries = DeliveryService(sandbox.sessionmaker, sandbox.settings)

        async def settle() -> None:  # what the background tasks do in `serve`
            await sandbox.deliver()
            await deliveries.sweep()

        try:
            code = await Demo(
                sandbox.client, sandbox.settings, settle=settle, out=output.append
            ).run()
        finally:
            await deliveries.aclose()

        text = "".join(output)
        assert code == 0, text
        assert "All balances are as the specification says." in text
        assert "WRONG" not in text
        final = text.rsplit("== dispute won: money back", 1)[1]
        assert "customer         45.00        0.00         0.00       0.00  ok" in final
        assert "payee            30.00        0.00         0.00       0.00  ok" in final
        assert "withdrawal wd_" in text
        assert "available after 30.00, expected in the bank on " in text
        assert await sandbox.undelivered() == []
        received = [line.split()[2] for line in text.splitlines() if line.startswith("  event ")]
        assert received[:28] == [
            "topup.succeeded",
            "escrow.funded",
            "payout_account.updated",
            "escrow.accepted",
            "escrow.completed",
            "withdrawal.created",
            "withdrawal.paid",
            "refund.succeeded",
            "order.refunded",
            "order.paid",  # the tip
            "refund.succeeded",  # its refund
            "order.refunded",
            "wallet.debited",
            "wallet_refund.created",
            "refund.succeeded",  # the cash-out's one refund
            "order.refunded",
            "wallet_refund.succeeded",
            "dispute.created",
            "dispute.closed",
            "payment_method.saved",
            "topup.succeeded",
            "payment_method.saved",
            "topup.requires_action",
            "topup.succeeded",
            "escrow.authorized",
            "escrow.funded",
            "escrow.accepted",
            "order.paid",
        ]
        cards = text.rsplit("== payee accepts, 31.50 captured", 1)[1]
        assert "customer         95.00       30.00         0.00       0.00  ok" in cards
        # then the subscription: subscribed, renewed, failed, recovered (whatever order the
        # subscription's own events take, each paid invoice once, each event verified once)
        subscription = received[28:]
        assert subscription.count("invoice.paid") == 3
        assert subscription.count("invoice.payment_failed") == 1
        assert subscription.count("subscription.created") == 1
        assert text.count("  verified") == len(received)
        assert "DUPLICATE" not in text
        steps = text.rsplit("== customer subscribes", 1)[1]
        for line in (
            "status active, entitled true; wallet available 98.00  ok",
            "a month later: renewal paid\nsubscription",
            "status active, entitled true; wallet available 101.00  ok",
            "status past_due, entitled true; wallet available 101.00  ok",
            "status active, entitled true; wallet available 104.00  ok",
        ):
            assert line in steps, steps

    async def test_it_fails_when_stripe_never_confirms(self, sandbox: Sandbox) -> None:
        output: list[str] = []
        now = [0.0]
        settled = 0

        async def no_webhooks() -> None:
            # Each wait for Stripe "takes" a second of the demo's own clock: the step's
            # deadline passes after a known number of waits, without waiting for real.
            nonlocal settled
            settled += 1
            now[0] += 1.0
            await asyncio.sleep(0)

        demo = Demo(
            sandbox.client,
            sandbox.settings,
            settle=no_webhooks,
            out=output.append,
            timeout=5.0,
            clock=lambda: now[0],
        )

        assert await demo.run() == 1
        assert "timed out waiting for the top-up" in "".join(output)
        assert settled == 6  # checked at 1..5 s, still inside; at 6 s past the deadline
