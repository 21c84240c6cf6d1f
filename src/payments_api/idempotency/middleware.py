"""Idempotency-Key replay for every write route, as a pure ASGI middleware.

It applies to POST, PUT, PATCH and DELETE under ``/api/v1/`` (webhooks excluded: Stripe
events are deduplicated by their own id) when the request carries an
``Idempotency-Key`` header and a valid bearer token, and a route takes the method at
that path; anything else passes through untouched (a missing or bad token is the route's
401 to give, an unknown path or method the router's 404 or 405). A key outside its
declared schema (1 to 255 printable ASCII characters; empty included) is 422
``validation_error``.

Two protocols, chosen by the route the request is for.

**One transaction** (routes marked ``@one_transaction``: they only touch the database):

1. Open the route's transaction and claim the key as its first statement (insert the
   row, or find it; the claim also takes the key's transaction-level advisory lock, so
   a twin sees the key busy and answers 409 ``idempotency_key_in_use`` at once instead
   of waiting).
2. Run the route on that session (``get_session`` hands it over), buffering its
   response.
3. A success (2xx, 3xx): store the response in the key row; commit; then send.
   An error to keep (4xx, see ``_executed``): roll the whole transaction back (the
   route's writes and the claim go), then claim the key again and store the answer
   in a transaction of its own (``_store_refusal``). Anything else (5xx, exception,
   validation failure): roll the whole transaction back, key included, so a retry runs
   again.

One COMMIT per request, and no window: the route's effects and its stored response
commit together, so after a crash either both are there (a retry replays) or neither
(a retry runs). No savepoint between the claim and the route: a success, the common
case, sends one statement less; a refusal pays two transactions instead. Between
them the key is free for an instant: a twin arriving then runs the route itself,
which is safe (the refused request wrote nothing), and the refusal is then not
stored (the twin's answer is).

**Lease** (every other write route, e.g. those calling Stripe, which must never hold a
transaction across the call), each step in its own short transaction (a single
self-committing statement, see ``repository.py``):

1. Claim the key (:meth:`IdempotencyService.claim`) and commit, so a concurrent twin
   sees it: a twin gets 409 ``idempotency_key_in_use``, a different request with the
   key 422 ``idempotency_key_reused``, a retry of a completed request the stored
   response with ``Idempotent-Replayed: true``.
2. Run the route, buffering its response, while a heartbeat renews the lease.
3. Store the response (a result the route produced: status < 500), then send it; or,
   when nothing was executed or the outcome is unknown (5xx, exception, request
   validation failure, no such route), release the key so a retry runs again.

The lease protocol's crash window: the route commits its own transaction before its
response reaches step 3. If the process dies in between (or the store fails), the key
stays in flight until its lease runs out, and a retry then executes the route again.
Those routes must therefore be idempotent themselves for the effects they commit, e.g.
a pending row derived from the Idempotency-Key; the middleware turns "executes at most
once per key in the common case" into cheap replays, the route's own keys make it
exact.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments_api.auth import Principal, authenticate
from payments_api.db import driver_connection
from payments_api.idempotency.buffered_response import BufferedResponse
from payments_api.idempotency.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from payments_api.idempotency.service import (
    Claimed,
    IdempotencyService,
    IdempotentRequest,
    KeyInUse,
    KeyReused,
    Replay,
    ResponseRiding,
    StoredResponse,
    request_fingerprint,
)
from payments_api.kit.idempotency import (
    AFTER_COMMIT,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    REPLAYED_HEADER,
    RESPONSE_RIDING,
    ROUTE_SESSION,
)
from payments_api.kit.route_index import RouteEntry, route_table
from payments_api.problems import PROBLEM_MEDIA_TYPE, ProblemError, problem_response
from payments_api.state import AppState
from payments_api.users.repository import UserRepository

log = structlog.get_logger("payments_api.idempotency")

METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1/"
EXCLUDED_PREFIXES = ("/api/v1/webhooks/",)

# Headers replayed with a stored response. Everything else is either per-response
# (content-length, date, x-request-id: set again on replay) or must never be replayed
# to whoever holds the key (set-cookie).
REPLAYED_HEADERS = frozenset(
    {
        "content-type",
        "content-language",
        "location",
        "cache-control",
        "etag",
        "last-modified",
        "link",
    }
)
# Problems raised before a route's handler runs: nothing was executed, so the key is
# released and the corrected request may reuse it (Stripe does the same).
NOT_EXECUTED_CODES = frozenset({"validation_error", "malformed_json"})
# The key's declared schema (openapi.IDEMPOTENCY_KEY_SCHEMA): printable ASCII, 1 to 255.
VALID_KEY = re.compile(r"[!-~]+")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body to the app, then listens for disconnects."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _problem_code(headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    if not content_type.decode("latin-1").startswith(PROBLEM_MEDIA_TYPE):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, str) else None


def _executed(scope: Scope, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Whether the response is a result of the route that a retry must get again."""
    if status >= 500 or status in (401, 405, 429):
        return False
    if scope.get("route") is None:  # no route matched: 404 from the router
        return False
    return not (status in (400, 422) and _problem_code(headers, body) in NOT_EXECUTED_CODES)


def _stored(headers: list[tuple[bytes, bytes]], status: int, body: bytes) -> StoredResponse:
    return StoredResponse(
        status=status,
        headers=[
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in headers
            if name.decode("latin-1").lower() in REPLAYED_HEADERS
        ],
        body=body,
    )


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _route_of(self, scope: Scope) -> RouteEntry | None:
        """The route the router will run for this method and path, None when there is
        none (the router's 404 or 405): looked up in the application's route table
        (``kit.route_index``), not by asking each of FastAPI's routes."""
        return route_table(scope["app"]).route_of(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        key = _header(scope, b"idempotency-key")
        resources: AppState | None = getattr(scope["app"].state, "resources", None)
        # No key: the route decides (IdempotencyKeyDep answers 400 where it is required).
        # No route for this method and path: the router's 404 or 405, whatever the key
        # (claiming it first answered a PUT to a POST route 422 idempotency_key_reused).
        if key is None or resources is None or (route := self._route_of(scope)) is None:
            await self.app(scope, receive, send)
            return
        principal = authenticate(scope, resources.verifier)
        if not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        if not VALID_KEY.fullmatch(key) or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            await self._key_invalid(key, scope, receive, send, resources)
            return
        body = await _read_body(receive)
        if body is None:
            return
        method: str = scope["method"]
        path: str = scope["path"]
        request = IdempotentRequest(
            user_id=principal.sub,
            key=key,
            fingerprint=request_fingerprint(method, path, scope.get("query_string", b""), body),
            method=method,
            path=path,
        )
        settings = resources.settings
        lease = timedelta(seconds=settings.idempotency_lease_seconds)
        retention = timedelta(hours=settings.idempotency_retention_hours)

        def service_in(session: AsyncSession) -> IdempotencyService:
            return IdempotencyService(session, lease=lease, retention=retention)

        receive = _replaying(body, receive)
        if route.one_transaction:
            await self._execute_in_one_transaction(
                scope, receive, send, resources, request, service_in
            )
            return

        async with resources.sessionmaker.begin() as session:
            outcome = await service_in(session).claim(request)
        await self._answer(scope, receive, send, resources, outcome, service_in)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        resources: AppState,
        outcome: Claimed | Replay | KeyReused | KeyInUse,
        service_in: Callable[[AsyncSession], IdempotencyService],
    ) -> None:
        path: str = scope["path"]
        if isinstance(outcome, Replay):
            await self._replay(outcome.response, send)
        elif isinstance(outcome, KeyReused):
            error: ProblemError = IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request (first "
                f"{outcome.method} {outcome.path}). Use a new key for a new request."
            )
            await self._problem(scope, receive, send, resources, error)
        elif isinstance(outcome, KeyInUse):
            error = IdempotencyKeyInUse(
                "The first request with this Idempotency-Key has not finished yet; "
                "retry after the indicated delay.",
                headers={"Retry-After": str(outcome.retry_after_seconds)},
            )
            await self._problem(scope, receive, send, resources, error)
        else:
            if outcome.taken_over:
                log.warning("idempotency lease expired; retry takes the key over", path=path)
            await self._execute(scope, receive, send, resources, outcome, service_in)

    async def _execute_in_one_transaction(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        resources: AppState,
        request: IdempotentRequest,
        service_in: Callable[[AsyncSession], IdempotencyService],
    ) -> None:
        session = resources.sessionmaker()
        committed = False
        try:
            await driver_connection(session)  # BEGIN
            service = service_in(session)
            outcome = await service.claim(request)
            if not isinstance(outcome, Claimed):
                await session.rollback()  # nothing was written; frees the connection
                await self._answer(scope, receive, send, resources, outcome, service_in)
                return
            if outcome.taken_over:
                log.warning(
                    "idempotency lease expired; retry takes the key over", path=request.path
                )
            if outcome.user is not None:
                # Read by the claim: the route's CurrentUser sends no statement for it.
                UserRepository(session).adopt(outcome.user)
            riding = ResponseRiding(outcome)
            session.info[RESPONSE_RIDING] = riding
            start, body = await self._run_buffered(scope, receive, session)
            if start is None or body is None:  # no complete response: nothing to keep
                await session.rollback()
                if start is not None:
                    await send(start)
                    await send({"type": "http.response.body", "body": b""})
                return
            status = int(start["status"])
            headers: list[tuple[bytes, bytes]] = list(start.get("headers", []))
            if not _executed(scope, status, headers, body):
                await session.rollback()
            elif status >= 400:
                await session.rollback()  # the route's writes go, and the claim with them
                await self._store_refusal(resources, request, service_in, status, headers, body)
            elif not await self._commit_with(session, service, riding, status, headers, body):
                await session.rollback()
                log.warning(
                    "idempotency: the route's session cannot commit; response not stored",
                    path=request.path,
                    status=status,
                )
            else:
                committed = True
            await send(start)
            await send({"type": "http.response.body", "body": body})
        finally:
            # Shielded: a cancelled request (client gone, shutdown) still rolls back and
            # returns its connection.
            with anyio.CancelScope(shield=True):
                await session.close()
        await _run_after_commit(scope, committed)

    async def _run_buffered(
        self, scope: Scope, receive: Receive, session: AsyncSession
    ) -> tuple[Message | None, bytes | None]:
        """Run the route on ``session``; its response start and whole body (None when
        the body did not finish). An exception propagates (the caller rolls back)."""
        response = BufferedResponse()
        scope[ROUTE_SESSION] = session
        try:
            await self.app(scope, receive, response)
        finally:
            del scope[ROUTE_SESSION]
        return response.start, (response.body if response.finished else None)

    @staticmethod
    async def _commit_with(
        session: AsyncSession,
        service: IdempotencyService,
        riding: ResponseRiding,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> bool:
        """Store the response in the key row and commit, with the route's writes; the
        store is done when a statement of the route stored this very response already
        (``riding``). False when the session cannot commit (a flush of the route
        failed)."""
        transaction = session.sync_session.get_transaction()
        if transaction is None or not transaction.is_active:
            return False
        response = _stored(headers, status, body)
        if riding.written != response and not await service.complete(riding.claim, response):
            return False  # pragma: no cover - the key is this transaction's own row
        await session.commit()
        return True

    @staticmethod
    async def _store_refusal(
        resources: AppState,
        request: IdempotentRequest,
        service_in: Callable[[AsyncSession], IdempotencyService],
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """Claim the key again and store the route's error answer, in a transaction of
        its own (the route's was rolled back). Not stored when the key is no longer
        free: a twin claimed it in between and its answer is the one to keep."""
        with anyio.CancelScope(shield=True):
            async with resources.sessionmaker() as session:
                await driver_connection(session)  # BEGIN: the claim and the answer together
                service = service_in(session)
                claim = await service.claim(request)
                if isinstance(claim, Claimed) and await service.complete(
                    claim, _stored(headers, status, body)
                ):
                    await session.commit()
                else:
                    await session.rollback()
                    log.info(
                        "idempotency: a twin took the key; the refusal is not stored",
                        path=request.path,
                        status=status,
                    )

    @staticmethod
    def _applies(scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            return False
        path: str = scope["path"]
        return path.startswith(API_PREFIX) and not path.startswith(EXCLUDED_PREFIXES)

    async def _execute(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        resources: AppState,
        claim: Claimed,
        service_in: Callable[[AsyncSession], IdempotencyService],
    ) -> None:
        response = BufferedResponse()

        async def in_transaction(step: Callable[[IdempotencyService], Awaitable[bool]]) -> None:
            # Shielded: a cancelled request (client gone, shutdown) still stores or
            # releases its key rather than leaving it locked until the lease runs out.
            with anyio.CancelScope(shield=True):
                try:
                    async with resources.sessionmaker.begin() as session:
                        await step(service_in(session))
                except Exception:
                    log.exception("idempotency key update failed; the lease will expire")

        heartbeat = asyncio.create_task(self._heartbeat(resources, claim, service_in))
        try:
            await self.app(scope, receive, response)
        except BaseException:
            heartbeat.cancel()
            await in_transaction(lambda service: service.release(claim))
            raise
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

        start = response.start
        body = response.body
        if start is None or not response.finished:
            await in_transaction(lambda service: service.release(claim))
            if start is not None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
            return
        status = int(start["status"])
        headers: list[tuple[bytes, bytes]] = list(start.get("headers", []))
        # Stored before it is sent, so a client that saw this response always gets it
        # again on retry.
        if _executed(scope, status, headers, body):
            stored = _stored(headers, status, body)
            await in_transaction(lambda service: service.complete(claim, stored))
        else:
            await in_transaction(lambda service: service.release(claim))
        await send(start)
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _heartbeat(
        resources: AppState,
        claim: Claimed,
        service_in: Callable[[AsyncSession], IdempotencyService],
    ) -> None:
        """Renew the lease while the route runs, so only a dead process loses its key
        (a slow request does not, however long a Stripe call takes)."""
        interval = resources.settings.idempotency_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with resources.sessionmaker.begin() as session:
                    if not await service_in(session).extend_lease(claim):
                        return
            except Exception:
                log.exception("idempotency lease renewal failed")

    @staticmethod
    async def _replay(response: StoredResponse, send: Send) -> None:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
        ]
        if response.status not in (204, 304):  # RFC 9110: no Content-Length on these
            headers.append((b"content-length", str(len(response.body)).encode()))
        headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    async def _problem(
        scope: Scope, receive: Receive, send: Send, resources: AppState, error: ProblemError
    ) -> None:
        response = problem_response(
            scope["path"],
            scope.get("state", {}).get("request_id"),
            status=error.status,
            code=error.code,
            title=error.title,
            detail=error.detail,
            base_url=resources.settings.problem_base_url,
            headers=error.headers,
            extensions=error.extensions,
        )
        await response(scope, receive, send)

    @staticmethod
    async def _key_invalid(
        key: str, scope: Scope, receive: Receive, send: Send, resources: AppState
    ) -> None:
        """A key outside its declared schema: 422, as for any invalid parameter."""
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            message = f"String should have at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
            kind = "string_too_long"
        elif not key:
            message = "String should have at least 1 character"
            kind = "string_too_short"
        else:
            message = f"String should match pattern '^{VALID_KEY.pattern}$' (printable ASCII)"
            kind = "string_pattern_mismatch"
        response = problem_response(
            scope["path"],
            scope.get("state", {}).get("request_id"),
            status=422,
            code="validation_error",
            title="Request validation failed",
            detail=f"header.Idempotency-Key: {message}",
            base_url=resources.settings.problem_base_url,
            extensions={
                "errors": [{"loc": ["header", "Idempotency-Key"], "msg": message, "type": kind}]
            },
        )
        await response(scope, receive, send)


async def _run_after_commit(scope: Scope, committed: bool) -> None:
    """The work a one-transaction route asked to run once its writes committed
    (``kit.idempotency.after_commit``), e.g. a Stripe call the route recorded; nothing
    when they did not commit. A failure is logged: the work has its own recovery."""
    work: list[Callable[[], Awaitable[None]]] = scope.pop(AFTER_COMMIT, None) or []
    if not committed:
        return
    for item in work:
        try:
            await item()
        except Exception:
            log.exception("idempotency: after-commit work failed")
