/**
 * The usage file against a live service in sandbox mode (scripts/check_client.sh starts
 * one on a free port and mints the tokens): the generated types and openapi-fetch do
 * what an app needs, and the sandbox plays Stripe's part.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import {
  PaymentsError,
  checkoutTopUp,
  offerJob,
  onboardingUrl,
  payoutHistory,
  payoutSetup,
  paymentsClient,
  topUp,
  walletLines,
  withdraw,
} from "../src/usage.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (scripts/check_client.sh sets it)`);
  return value;
}

const baseUrl = env("PAYMENTS_BASE_URL");
const customer = paymentsClient(baseUrl, env("CUSTOMER_TOKEN"));
const payee = paymentsClient(baseUrl, env("PAYEE_TOKEN"));
const payeeId = env("PAYEE_ID");

/** Poll until `check` holds: the webhook is asynchronous, like Stripe's. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("a payee with no payout account is offered to start onboarding", async () => {
  const setup = await payoutSetup(payee);
  assert.equal(setup.status, "not_started");
  assert.equal(setup.action, "start");
  const history = await payoutHistory(payee);
  assert.deepEqual(history, { payouts: [], withdrawals: [], more: false });
});

test("a withdrawal before onboarding fails with a stable problem code", async () => {
  await assert.rejects(withdraw(payee, 1_000, "usd", randomUUID()), (error: unknown) => {
    assert.ok(error instanceof PaymentsError);
    assert.equal(error.status, 409);
    assert.equal(error.code, "payout_account_not_ready");
    assert.match(error.requestId ?? "", /^[0-9a-f]{32}$/);
    return true;
  });
});

test("checkout top-up paid on the sandbox page credits the wallet, then an escrow holds it", async () => {
  const url = await checkoutTopUp(customer, 20_000, "usd", randomUUID(), `${baseUrl}/sandbox/`);
  assert.ok(url.startsWith(`${baseUrl}/sandbox/`), url);
  // The customer presses "Pay" on the hosted page (a form POST, as the browser sends it).
  const paid = await fetch(url, {
    method: "POST",
    body: new URLSearchParams({ action: "pay" }),
    redirect: "manual",
  });
  assert.ok(paid.status < 400, `pay answered ${paid.status}`);
  await eventually("the wallet credit", async () =>
    (await walletLines(customer)).some((line) => line.startsWith("200.00 USD available")),
  );

  const key = randomUUID();
  const offer = await offerJob(customer, payeeId, 10_000, "usd", key);
  assert.equal(offer.status, "created");
  assert.equal(offer.held, 10_500);
  // The same Idempotency-Key replays the same escrow; nothing is held twice.
  const again = await offerJob(customer, payeeId, 10_000, "usd", key);
  assert.equal(again.id, offer.id);
  assert.deepEqual(await walletLines(customer), [
    "95.00 USD available, 105.00 USD in escrow, 0.00 USD on the way, 0.00 USD pending",
  ]);
});

test("an offer the wallet does not cover is declined with 402 insufficient_funds", async () => {
  // 95.00 is left; 100.00 plus the 5% fee is not there. 402 is the API's one status for
  // this code, on every route that spends the wallet.
  await assert.rejects(offerJob(customer, payeeId, 10_000, "usd", randomUUID()), (error: unknown) => {
    assert.ok(error instanceof PaymentsError);
    assert.equal(error.status, 402);
    assert.equal(error.code, "insufficient_funds");
    return true;
  });
  assert.deepEqual(await walletLines(customer), [
    "95.00 USD available, 105.00 USD in escrow, 0.00 USD on the way, 0.00 USD pending",
  ]);
});

test("a PaymentIntent top-up returns the client secret for the mobile SDK", async () => {
  const intent = await topUp(customer, 5_000, "usd", randomUUID());
  assert.match(intent.clientSecret, /^pi_.+_secret_.+$/);
  assert.match(intent.orderId, /^ord_/);
});

test("the onboarding link is a fresh sandbox URL each time", async () => {
  const first = await onboardingUrl(payee);
  const second = await onboardingUrl(payee);
  assert.ok(first.startsWith(baseUrl), first);
  assert.notEqual(first, second);
});
