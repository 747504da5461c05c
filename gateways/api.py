"""The gateway's HTTP API (aiohttp): submit referrals, read the inbox and outbox, change status.

Every route but /healthz needs ``Authorization: Bearer <agency API token>``; a missing or wrong
token gets 401 and no data. Bodies are checked against the Avro contract before anything is
stored; a bad body gets 400 naming the field, and a date field that holds no date 422 naming
it. Logs carry referral and event ids, never case fields, a consent id or a subject id. The routes are described by /openapi.json (gateways/openapi.py).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateways import feed
from gateways.commits import GroupCommit
from gateways.gateway import Paused
from gateways.openapi import OPENAPI
from gateways.store import NotFound, StoreError
from gateways import access
from gateways.desk import Desk, Forbidden, _forbidden
from refmesh import permissions
from refmesh import records
from refmesh.errors import FieldValueError, MeshError, RecordError, failure
from refmesh.loop import TransitionError

log = logging.getLogger("refmesh.api")
MAX_BODY = 256 * 1024  # a referral is a few KB; anything far larger is refused unread
GATEWAY = web.AppKey("gateway", object)
WEB_ROUTES = "web:"  # name prefix of the web page's routes: no token, sessions instead
DESK = web.AppKey("desk", Desk)
COMMITS = web.AppKey("commits", GroupCommit)  # submissions share commits (gateways/commits.py)
PRINCIPAL = web.RequestKey("principal", permissions.Principal)
#: what each route needs at least (refmesh.permissions); the handlers (gateways/desk.py) check
#: the referral or consent itself. Routes not named (metrics, the OpenAPI description) need a
#: token of any scope.
NEEDS = {
    ("POST", "/v1/referrals"): "send", ("GET", "/v1/inbox"): "list",
    ("GET", "/v1/outbox"): "list", ("GET", "/v1/referrals/{id}"): "view",
    ("POST", "/v1/referrals/{id}/status"): "status",
    ("POST", "/v1/referrals/{id}/assign"): "assign", ("POST", "/v1/consents"): "consent",
    ("GET", "/v1/consents"): "consents", ("GET", "/v1/consents/{id}"): "consents",
    ("POST", "/v1/consents/{id}/withdraw"): "withdraw", ("GET", "/v1/erasures"): "erasures",
    ("GET", "/v1/events"): "list", ("GET", "/v1/access"): "access",
}


def principal_of(gateway, supplied: str) -> permissions.Principal | None:
    """Who an ``Authorization`` header names: the agency's token from the environment (every
    scope), a token kept in the database (its scopes), or nobody."""
    # surrogateescape: aiohttp hands bytes that are not UTF-8 over as lone surrogates, which a
    # plain encode() refuses (a 500 instead of the 401)
    raw = supplied.encode("utf-8", "surrogateescape")
    if hmac.compare_digest(raw, f"Bearer {gateway.api_token}".encode()):
        return permissions.Principal(access.AGENCY_TOKEN, scopes=frozenset(permissions.SCOPES))
    if not supplied.startswith("Bearer ") or len(supplied) > 512:
        return None
    with gateway.store.read() as db:
        return access.token_principal(db, supplied[len("Bearer "):])


def _who(request: web.Request) -> permissions.Principal:
    return request[PRINCIPAL]


def _desk(request: web.Request) -> Desk:
    return request.app[DESK]


def problem(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return web.json_response(body, status=status)


@web.middleware
async def guard(request: web.Request, handler):
    """Authentication, error translation, security headers and request metrics."""
    gateway = request.app[GATEWAY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unknown"
    if (request.match_info.route.name or "").startswith(WEB_ROUTES):
        # The case workers' web page (gateways/web) signs people in with sessions and has its
        # own guard for them; the token is for programs.
        return _done(gateway, route, await handler(request))
    try:
        if request.path != "/healthz":
            who = principal_of(gateway, request.headers.get("Authorization", ""))
            if who is None:
                response = problem(401, "missing or wrong API token: send "
                                        "'Authorization: Bearer <token>'")
                response.headers["WWW-Authenticate"] = 'Bearer realm="refmesh"'
                return _done(gateway, route, response)
            request[PRINCIPAL] = who
            need = NEEDS.get((request.method, route))
            if need is not None and not permissions.may(who, need):
                raise _forbidden(who, need)
        response = await handler(request)
    except FieldValueError as exc:  # the right type, not what the field means (a date)
        response = problem(422, f"invalid value: {exc.problem}", exc.path)
    except RecordError as exc:
        response = problem(400, f"invalid value: {exc.problem}", exc.path)
    except TransitionError as exc:
        response = problem(409, str(exc))
    except NotFound as exc:
        response = problem(404, str(exc))
    except Paused as exc:
        response = problem(503, str(exc))
    except Forbidden as exc:
        response = problem(403, str(exc))
    except StoreError as exc:
        log.error("store refused a write: %s", exc)
        response = problem(503, "the gateway cannot store data right now (disk full or "
                                "read-only database); nothing was accepted, try again later")
    except MeshError as exc:
        response = problem(400, str(exc))
    except web.HTTPException as exc:
        response = problem(exc.status, exc.reason)
    except Exception as exc:  # a bug: answer in JSON like every other error, and log it
        # loudly, by its type and place: its message may quote the body's values
        log.error("request to %s failed: %s", route, failure(exc))
        response = problem(500, "internal error in the gateway; it was logged")
    return _done(gateway, route, response)


def _done(gateway, route: str, response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    gateway.metrics.api_requests.labels(route, str(response.status)).inc()
    return response


async def json_body(request: web.Request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RecordError("body", f"larger than {MAX_BODY} bytes")
    raw = bytearray()
    # read(n) returns what has arrived so far, not n bytes: a body in several TCP segments
    # would be cut (and refused as bad JSON) after one read
    while chunk := await request.content.read(MAX_BODY + 1 - len(raw)):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise RecordError("body", f"larger than {MAX_BODY} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON, bad UTF-8, and integers longer than Python's 4300-digit limit
        raise RecordError("body", f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise RecordError("body", "expected a JSON object")
    return value


async def submit(request: web.Request) -> web.Response:
    referral = await request.app[COMMITS].run(_desk(request).submit, _who(request),
                                              await json_body(request))
    log.info("referral %s accepted for %s", referral["referralId"], referral["recipientAgency"])
    return web.json_response({"referralId": referral["referralId"], "state": "requested"},
                             status=202)


async def inbox(request: web.Request) -> web.Response:
    return web.json_response({"referrals": _desk(request).referrals(_who(request), "in")})


async def outbox(request: web.Request) -> web.Response:
    return web.json_response({"referrals": _desk(request).referrals(_who(request), "out")})


async def show(request: web.Request) -> web.Response:
    return web.json_response(_desk(request).referral(
        _who(request), request.match_info["id"], request.query.get("sender")))


async def change_status(request: web.Request) -> web.Response:
    body = await json_body(request)
    unknown = sorted(set(body) - {"state", "reason", "detail"})
    if unknown:
        raise RecordError(unknown[0], "unknown field; send state, reason and detail")
    if "state" not in body:
        raise RecordError("state", "is required")
    gateway = request.app[GATEWAY]
    # Checked against the contract before the store sees it: the store writes the history
    # row before it encodes the status, and SQLite refuses a list or object there (a 503).
    records.ReferralStatus.from_dict({
        "referralId": request.match_info["id"], "state": body["state"],
        "reason": body.get("reason"), "detail": body.get("detail"),
        "setBy": gateway.settings.agency, "at": 0})
    status = _desk(request).set_status(_who(request), request.match_info["id"], body["state"],
                                       body.get("reason"), body.get("detail"),
                                       request.query.get("sender"))
    log.info("referral %s set to %s", status["referralId"], status["state"])
    return web.json_response(status)


async def record_consent(request: web.Request) -> web.Response:
    consent = await request.app[COMMITS].run(_desk(request).record_consent, _who(request),
                                             await json_body(request))
    # a consent id is shared by every referral of one person: never in a log
    log.info("consent recorded (version %d)", consent["version"])
    return web.json_response({"consentId": consent["consentId"], "version": consent["version"]},
                             status=202)


async def withdraw_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    unknown = sorted(set(body) - {"channel"})
    if unknown:
        raise RecordError(unknown[0], "unknown field; send channel")
    consent = _desk(request).withdraw(_who(request), request.match_info["id"],
                                      body.get("channel", "InPerson"))
    log.info("consent withdrawn")
    return web.json_response(consent, status=202)


async def consents(request: web.Request) -> web.Response:
    return web.json_response({"consents": _desk(request).consents(_who(request))})


async def consent(request: web.Request) -> web.Response:
    return web.json_response(_desk(request).consent(_who(request), request.match_info["id"]))


async def erasures(request: web.Request) -> web.Response:
    return web.json_response({"erasures": _desk(request).erasures(_who(request))})


async def assign(request: web.Request) -> web.Response:
    """Assign a referral to a case worker and/or a team (refmesh.permissions: supervisors and
    admin tokens)."""
    body = await json_body(request)
    unknown = sorted(set(body) - {"username", "team"})
    if unknown:
        raise RecordError(unknown[0], "unknown field; send username and/or team")
    for name in ("username", "team"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise RecordError(name, "expected a string or null")
    done = _desk(request).assign(_who(request), request.match_info["id"],
                                 request.query.get("sender"), body.get("username"),
                                 body.get("team"))
    log.info("referral %s assigned", done["referralId"])
    return web.json_response(done)


async def access_record(request: web.Request) -> web.Response:
    """The record of access, oldest first, after ``after`` (a seq), at most ``limit``."""
    unknown = sorted(set(request.query) - {"after", "limit"})
    if unknown:
        raise RecordError(unknown[0], "unknown parameter; send after and limit")
    try:
        after = int(request.query.get("after", "-1"))
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        raise RecordError("after", "after and limit must be integers") from None
    if not 1 <= limit <= 1000:
        raise RecordError("limit", "must be between 1 and 1000")
    return web.json_response(_desk(request).access_log(_who(request), after, limit))


async def events(request: web.Request) -> web.Response:
    """The change feed (gateways/feed.py): the entries after the cursor ``after``; with
    ``wait``, the answer waits up to that many seconds for a first entry (a long poll)."""
    unknown = sorted(set(request.query) - {"after", "wait", "limit"})
    if unknown:
        raise RecordError(unknown[0], "unknown parameter; send after, wait and limit")
    after = feed.cursor(request.query.get("after"))
    wait = feed.seconds(request.query.get("wait"))
    limit = feed.limit(request.query.get("limit"))
    store = request.app[GATEWAY].store
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        rung = store.bell.rung  # read before the feed: a ring after it ends the wait at once
        rows = store.feed(after, limit)
        left = deadline - asyncio.get_running_loop().time()
        if rows or left <= 0 or store.bell.closed:
            break
        await store.bell.wait(rung, left)
    entries = [feed.entry(r) for r in rows]
    return web.json_response({"events": entries,
                              "next": entries[-1]["cursor"] if entries else str(after)})


async def _stop_waiting(app: web.Application) -> None:
    """The server stops: long polls answer now with what they have, instead of holding the
    shutdown up to their wait."""
    store = getattr(app[GATEWAY], "store", None)
    if store is not None:
        store.bell.close()


UNASSIGNED_GRACE_S = 20.0  # a group join takes a few seconds; longer means it is stuck


def problems(relay_alive: bool, inbox_alive: bool, unassigned_s: float,
             write_error: str | None, topic: str, directory: list[str] = ()) -> list[str]:
    """What keeps a gateway from doing its work, in words for an operator (no case data).
    ``directory``: what the signed directory's reference says (an expired edition, a refused
    file: kafkaedge.loading.DirectoryRef.problems)."""
    out = list(directory)
    if not relay_alive:
        out.append("the relay thread stopped: nothing is published")
    if not inbox_alive:
        out.append("the inbox thread stopped: nothing is received")
    if unassigned_s > UNASSIGNED_GRACE_S:
        out.append(f"the inbox consumer has held no partition of {topic} for "
                   f"{unassigned_s:.0f} s: nothing is received (the gateway starts a new "
                   "consumer after 30 s; if this stays, restart the gateway)")
    if write_error is not None:
        out.append(f"the database refuses writes ({write_error}): nothing can be accepted; "
                   "check the disk space and the database file's permissions")
    return out


async def health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    found = problems(gateway.relay.thread.is_alive(), gateway.inbox.thread.is_alive(),
                     gateway.inbox.unassigned_s(), gateway.store.write_error,
                     gateway.inbox.topic, gateway.directory.problems())
    return web.json_response({"ok": not found, "problems": found},
                             status=503 if found else 200)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def _close_commits(app: web.Application) -> None:
    app[COMMITS].close()


def create_api(gateway) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[GATEWAY] = gateway
    app[DESK] = Desk(gateway)
    app[COMMITS] = GroupCommit(lambda: gateway.store)
    app.on_shutdown.append(_stop_waiting)
    app.on_cleanup.append(_close_commits)
    app.router.add_post("/v1/referrals", submit)
    app.router.add_get("/v1/inbox", inbox)
    app.router.add_get("/v1/outbox", outbox)
    app.router.add_get("/v1/referrals/{id}", show)
    app.router.add_post("/v1/referrals/{id}/status", change_status)
    app.router.add_post("/v1/referrals/{id}/assign", assign)
    app.router.add_get("/v1/access", access_record)
    app.router.add_post("/v1/consents", record_consent)
    app.router.add_get("/v1/consents", consents)
    app.router.add_get("/v1/consents/{id}", consent)
    app.router.add_post("/v1/consents/{id}/withdraw", withdraw_consent)
    app.router.add_get("/v1/erasures", erasures)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app
