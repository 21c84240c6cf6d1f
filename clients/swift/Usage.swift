// How an iOS app uses payments-api through the Swift client that
// scripts/generate_swift.sh generates from ../../openapi.json (openapi-generator's
// `swift6` generator, async/await). Add the generated package (Package.swift) to the
// app, then call it as below. This machine has no Swift toolchain, so CI generates the
// client but does not compile this file; keep it in step with the generated names.
import CryptoKit
import Foundation
import PaymentsAPI

/// One client per signed-in user: the platform's auth issues the JWT.
func configurePayments(baseURL: String, jwt: String) {
    let configuration = PaymentsAPIAPIConfiguration.shared
    configuration.basePath = baseURL
    configuration.customHeaders["Authorization"] = "Bearer \(jwt)"
}

/// What the app shows for a failed call: the problem's stable `code` drives the UI.
struct PaymentsProblem: Error {
    let status: Int
    let code: String
    let requestId: String?
}

func problem(from error: ErrorResponse) -> PaymentsProblem {
    switch error {
    case let .error(status, data, _, _):
        if let data, let body = try? JSONDecoder().decode(Problem.self, from: data) {
            return PaymentsProblem(status: status, code: body.code, requestId: body.requestId)
        }
        return PaymentsProblem(status: status, code: "unknown", requestId: nil)
    }
}

/// Top up with a PaymentIntent; the Stripe iOS SDK confirms the client secret.
/// One Idempotency-Key per user action, reused when the same action is retried.
func topUp(amount: Int, currency: Currency, key: String) async throws -> String? {
    do {
        let topup = try await TopupsAPI.createTopup(
            idempotencyKey: key,
            topupCreate: TopupCreate(amount: amount, currency: currency)
        )
        return topup.clientSecret
    } catch {
        throw problem(from: error)
    }
}

/// The wallet screen: amounts are integers in the currency's minor unit.
func walletLines() async throws -> [String] {
    let balance = try await BalanceAPI.getBalance()
    return balance.balances.map { line in
        "\(line.available) \(line.currency) available, \(line.escrow) in escrow"
    }
}

/// Offer a job to a payee: price plus the platform fee is held in escrow.
func offerJob(payeeId: String, price: Int, currency: Currency, key: String) async throws -> EscrowRead {
    try await EscrowAPI.createEscrow(
        idempotencyKey: key,
        escrowCreate: EscrowCreate(amount: price, currency: currency, payeeId: payeeId, reference: "job-1")
    )
}

/// Page through every escrow with `starting_after` until `has_more` is false.
func allEscrows() async throws -> [EscrowRead] {
    var all: [EscrowRead] = []
    var cursor: String? = nil
    repeat {
        let page = try await EscrowAPI.listEscrows(limit: 100, startingAfter: cursor)
        all += page.data
        cursor = page.hasMore ? page.data.last?.id : nil
    } while cursor != nil
    return all
}

/// Verify an outgoing event (Standard Webhooks): HMAC-SHA256 over
/// "<webhook-id>.<webhook-timestamp>.<raw body>" with the base64 part of the `whsec_`
/// secret; `webhook-signature` holds space-separated "v1,<base64>" candidates.
func verifyEvent(body: Data, id: String, timestamp: String, signatures: String, secret: String) -> Bool {
    guard let stamp = Int(timestamp), abs(Date().timeIntervalSince1970 - Double(stamp)) < 300,
          let key = Data(base64Encoded: String(secret.dropFirst("whsec_".count)))
    else { return false }
    var signed = Data("\(id).\(timestamp).".utf8)
    signed.append(body)
    return signatures.split(separator: " ").contains { candidate in
        let parts = candidate.split(separator: ",", maxSplits: 1)
        guard parts.count == 2, parts[0] == "v1", let given = Data(base64Encoded: String(parts[1])) else {
            return false
        }
        // CryptoKit compares in constant time: response times tell a forger nothing
        // about how many bytes of a guessed signature were right (`==` on Data would).
        return HMAC<SHA256>.isValidAuthenticationCode(
            given, authenticating: signed, using: SymmetricKey(data: key)
        )
    }
}
