/**
 * How a web or React Native app uses payments-api through the generated types.
 *
 * `tsc` checks it against `schema.d.ts`, which `npm run generate` derives from the
 * committed ../../openapi.json (a renamed field, a lost named schema, a changed enum or
 * a dropped route breaks the build, exactly as it would break an app), and
 * test/usage.test.ts runs it against a live sandbox service in CI.
 */
import createClient from "openapi-fetch";
import { Webhook } from "standardwebhooks";

import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type Balance = Schemas["CurrencyBalance"];
export type PayoutAccountStatus = Schemas["PayoutAccountStatus"];
/** The supported currency codes, lower case: the service refuses "USD". */
export type Currency = Schemas["Currency"];

/** A client for one signed-in user (the platform's auth issues the JWT). */
export function paymentsClient(baseUrl: string, token: string) {
  return createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
}

export type PaymentsClient = ReturnType<typeof paymentsClient>;

/** What the app shows for a failed call: the problem's stable `code` drives the UI. */
export class PaymentsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly requestId: string | null | undefined,
  ) {
    super(`${status} ${code}`);
  }
}

function fail(response: Response, problem: Problem | undefined): never {
  throw new PaymentsError(response.status, problem?.code ?? "unknown", problem?.request_id);
}

/** Money in minor units, shown in major units the way the wallet screen does. */
export function formatMoney(amount: number, currency: string): string {
  const digits = { jpy: 0, krw: 0, kwd: 3, bhd: 3 }[currency] ?? 2;
  return `${(amount / 10 ** digits).toFixed(digits)} ${currency.toUpperCase()}`;
}

/** Top up the wallet with a PaymentIntent; the mobile SDK confirms the client secret. */
export async function topUp(
  api: PaymentsClient,
  amount: number,
  currency: Currency,
  idempotencyKey: string,
): Promise<{ clientSecret: string; paymentIntentId: string; orderId: string }> {
  const { data, error, response } = await api.POST("/api/v1/topups", {
    params: { header: { "Idempotency-Key": idempotencyKey } },
    body: { amount, currency, automatic_payment_methods: true },
  });
  if (!data) fail(response, error);
  if (data.client_secret === null) throw new PaymentsError(502, "no_client_secret", null);
  return {
    clientSecret: data.client_secret,
    paymentIntentId: data.payment_intent_id,
    orderId: data.order_id,
  };
}

/** Start a Stripe Checkout top-up in the browser. */
export async function checkoutTopUp(
  api: PaymentsClient,
  amount: number,
  currency: Currency,
  idempotencyKey: string,
  returnUrl = "http://localhost:3000/wallet",
): Promise<string> {
  const purpose: Schemas["CheckoutSessionPurpose"] = "topup";
  const { data, error, response } = await api.POST("/api/v1/checkout/sessions", {
    params: { header: { "Idempotency-Key": idempotencyKey } },
    body: {
      purpose,
      amount,
      currency,
      // Must start with an allowed frontend origin (PAYMENTS_FRONTEND_ORIGINS).
      success_url: `${returnUrl}?checkout=success`,
      cancel_url: returnUrl,
    },
  });
  if (!data) fail(response, error);
  return data.url ?? `/orders/${data.order_id}`;
}

/** The wallet screen: one line per currency. */
export async function walletLines(api: PaymentsClient): Promise<string[]> {
  const { data, error, response } = await api.GET("/api/v1/me/balance");
  if (!data) fail(response, error);
  const lines = data.balances.map(
    (b: Balance) =>
      `${formatMoney(b.available, b.currency)} available, ` +
      `${formatMoney(b.escrow, b.currency)} in escrow, ` +
      `${formatMoney(b.withdrawing, b.currency)} on the way, ` +
      `${formatMoney(b.pending, b.currency)} pending`,
  );
  return data.frozen ? ["Withdrawals are paused", ...lines] : lines;
}

/** Offer a job to a payee: the price plus the platform fee is held in escrow. */
export async function offerJob(
  api: PaymentsClient,
  payeeId: string,
  price: number,
  currency: Currency,
  idempotencyKey: string,
): Promise<{ id: string; status: Schemas["EscrowStatus"]; held: number }> {
  const { data, error, response } = await api.POST("/api/v1/escrows", {
    params: { header: { "Idempotency-Key": idempotencyKey } },
    body: { payee_id: payeeId, amount: price, currency, reference: "job-1" },
  });
  if (!data) fail(response, error);
  // The customer sees what they pay on top; the payee's fields are null for them.
  return { id: data.id, status: data.status, held: data.hold_amount ?? data.amount };
}

/** Complete a job: settles the payee's take. */
export async function completeJob(
  api: PaymentsClient,
  escrowId: string,
  idempotencyKey: string,
): Promise<Schemas["EscrowStatus"]> {
  const { data, error, response } = await api.POST("/api/v1/escrows/{escrow_id}/complete", {
    params: { path: { escrow_id: escrowId }, header: { "Idempotency-Key": idempotencyKey } },
  });
  if (!data) fail(response, error);
  return data.status;
}

/** The payout settings screen: what to show and which button to offer. */
export async function payoutSetup(
  api: PaymentsClient,
): Promise<{ status: PayoutAccountStatus; action: "start" | "continue" | "dashboard"; due: string[] }> {
  const { data, error, response } = await api.GET("/api/v1/me/payout-account");
  if (!data) fail(response, error);
  const account = data.payout_account;
  const action = account.setup_complete
    ? "dashboard"
    : account.status === "not_started"
      ? "start"
      : "continue";
  return {
    status: account.status,
    action,
    due: [...account.requirements_past_due, ...account.requirements_currently_due],
  };
}

/** Open Stripe's onboarding: a fresh single-use URL every time. */
export async function onboardingUrl(api: PaymentsClient): Promise<string> {
  const { data, error, response } = await api.POST("/api/v1/me/payout-account/onboarding-link");
  if (!data) fail(response, error);
  return data.url;
}

/** Withdraw to the payout account; `pending` means Stripe's answer is still coming. */
export async function withdraw(
  api: PaymentsClient,
  amount: number,
  currency: Currency,
  idempotencyKey: string,
): Promise<Schemas["WithdrawalStatus"]> {
  const { data, error, response } = await api.POST("/api/v1/me/payouts", {
    params: { header: { "Idempotency-Key": idempotencyKey } },
    body: { amount, currency },
  });
  if (!data) fail(response, error);
  return data.status;
}

/** The payouts screen: Stripe's payouts and our withdrawal requests. */
export async function payoutHistory(
  api: PaymentsClient,
): Promise<{ payouts: string[]; withdrawals: string[]; more: boolean }> {
  const { data, error, response } = await api.GET("/api/v1/me/payouts", {
    params: { query: { limit: 20, status: "paid" } },
  });
  if (!data) fail(response, error);
  if (data.payout_account.status === "not_started") {
    return { payouts: [], withdrawals: [], more: false };
  }
  return {
    payouts: data.data.map(
      (p) => `${formatMoney(p.amount, p.currency)} ${p.status} (arrives ${p.arrival_date ?? "?"})`,
    ),
    withdrawals: data.withdrawals.map(
      (w) => `${formatMoney(w.amount, w.currency)} ${w.status}${w.failure_code ? ` (${w.failure_code})` : ""}`,
    ),
    more: data.has_more,
  };
}

/**
 * Verify an event the service sends to your backend (Standard Webhooks: `webhook-id`,
 * `webhook-timestamp`, `webhook-signature`) before trusting it. Pass the raw body as
 * received, not re-serialized JSON. Throws when the signature is forged, the body was
 * changed or the timestamp is more than five minutes away; returns the parsed event.
 */
export function eventVerifier(secret: string): (rawBody: string, headers: Record<string, string>) => unknown {
  const webhook = new Webhook(secret); // "whsec_<base64>"
  return (rawBody, headers) => webhook.verify(rawBody, headers);
}
