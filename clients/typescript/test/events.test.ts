/**
 * Verifying outgoing events, as docs/clients.md describes it: the signature is made
 * here by hand, step by step as the docs (and the Swift sample's `verifyEvent`) compute
 * it, and checked with the `standardwebhooks` library the TypeScript sample uses. If the
 * documented steps and the library disagreed, an app following either would refuse
 * genuine events. Needs no server.
 */
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";

import { eventVerifier } from "../src/usage.js";

const secretBytes = randomBytes(32);
const secret = `whsec_${secretBytes.toString("base64")}`;
const body = JSON.stringify({ type: "escrow.completed", data: { id: "esc_1", amount: 10_000 } });

/** The documented steps: HMAC-SHA256 over "<id>.<timestamp>.<raw body>" with the
 * base64-decoded part of the `whsec_` secret, sent as "v1,<base64>". */
function signByHand(key: Buffer, id: string, timestamp: number, payload: string): string {
  const mac = createHmac("sha256", key).update(`${id}.${timestamp}.${payload}`).digest("base64");
  return `v1,${mac}`;
}

function headers(id: string, timestamp: number, signature: string): Record<string, string> {
  return { "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": signature };
}

const now = () => Math.floor(Date.now() / 1000);

test("an event signed as the docs describe is accepted and parsed", () => {
  const verify = eventVerifier(secret);
  const stamp = now();
  const event = verify(body, headers("msg_1", stamp, signByHand(secretBytes, "msg_1", stamp, body)));
  assert.deepEqual(event, JSON.parse(body));
});

test("a changed body, another id or another secret is refused", () => {
  const verify = eventVerifier(secret);
  const stamp = now();
  const signature = signByHand(secretBytes, "msg_2", stamp, body);
  assert.throws(() => verify(body.replace("10000", "99999"), headers("msg_2", stamp, signature)));
  assert.throws(() => verify(body, headers("msg_3", stamp, signature)));
  const forged = signByHand(randomBytes(32), "msg_2", stamp, body);
  assert.throws(() => verify(body, headers("msg_2", stamp, forged)));
});

test("a timestamp more than five minutes away is refused even when correctly signed", () => {
  const verify = eventVerifier(secret);
  for (const stamp of [now() - 600, now() + 600]) {
    assert.throws(() => verify(body, headers("msg_4", stamp, signByHand(secretBytes, "msg_4", stamp, body))));
  }
});

test("during a secret rotation any one of the space-separated signatures suffices", () => {
  const verify = eventVerifier(secret);
  const stamp = now();
  const old = signByHand(randomBytes(32), "msg_5", stamp, body);
  const current = signByHand(secretBytes, "msg_5", stamp, body);
  assert.deepEqual(verify(body, headers("msg_5", stamp, `${old} ${current}`)), JSON.parse(body));
});
