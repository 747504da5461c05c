"""The case workers' web page, served by the gateway's aiohttp server beside the JSON API.

``mount(app, gateway)`` adds the page's routes (named ``web:*``, at ``/``; the API keeps
``/v1``) and its guard, which for those routes only:

- finds the session from its HttpOnly, SameSite=Strict cookie (gateways/web/auth.py) and shows
  the sign-in page to anyone without one;
- checks the synchronizer token of every POST against the session's CSRF token (before sign-in:
  an HMAC of a random pre-session cookie under a per-process key), refusing with 403;
- sets the security headers: a CSP with no script at all and ``frame-ancestors 'none'``,
  X-Frame-Options DENY, nosniff, Referrer-Policy no-referrer, no caching;
- turns a failure into a page that says what to do, logging the route and the error's type,
  never a value (exception messages can quote case data).

Pages are Jinja2 templates with autoescaping on for everything, and no JavaScript. Case data
travels only in POST bodies; URLs carry referral and consent ids at most.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import re
import secrets
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from aiohttp import web

from kafkaedge.loading import now_ms
from gateways.gateway import Paused
from gateways.store import NotFound
from gateways.desk import Desk, Forbidden
from gateways.web import admin, forms, pages
from gateways.web.auth import Accounts
from gateways.web.i18n import LANGUAGES
from gateways.web.preview import Previewer
from gateways.web.site import (SESSION, WEB, Web, ltr, pre_token, render, safe_next,
                               see_other, session_of, set_cookie)
from refmesh import permissions
from refmesh.errors import ConfigError
from refmesh.signin import Limits, Throttle

log = logging.getLogger("refmesh.web")
HERE = Path(__file__).resolve().parent
PUBLIC = frozenset({"web:signin", "web:signin-post", "web:language", "web:static"})
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def mount(app: web.Application, gateway, clock: Callable[[], int] = now_ms,
          hasher=None) -> Web:
    """Add the web page to the gateway's aiohttp ``app`` (before it starts)."""
    s = gateway.settings
    try:
        zone = ZoneInfo(s.web_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"web_timezone {s.web_timezone!r} is not an IANA time zone such as "
                          "Asia/Bahrain or UTC") from None
    safe = re.sub(r"[^A-Za-z0-9]", "_", s.agency)
    state = Web(
        gateway=gateway, accounts=Accounts(s.database, hasher),
        previewer=Previewer(s.policy, gateway.directory, s.agency,
                            lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
                            .isoformat(timespec="seconds").replace("+00:00", "Z")),
        templates=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True),
        clock=clock, zone=zone, idle_ms=s.web_session_idle_minutes * 60_000,
        max_ms=s.web_session_max_hours * 3_600_000, secure=s.served_over_tls,
        cookie=f"refmesh_session_{safe}", pre_cookie=f"refmesh_pre_{safe}",
        lang_cookie=f"refmesh_lang_{safe}", secret=secrets.token_bytes(32),
        css=(HERE / "static" / "style.css").read_bytes(), desk=Desk(gateway, clock),
        throttle=Throttle(Limits(per_address=s.web_signin_per_address,
                                 overall=s.web_signin_overall)))
    state.templates.globals["enum_fields"] = forms.ENUM_FIELDS
    state.templates.globals["date_fields"] = forms.DATE_FIELDS
    state.templates.filters["ltr"] = ltr
    app[WEB] = state
    app.middlewares.append(guard)
    add = app.router.add_route
    add("GET", "/", home, name="web:home")
    add("GET", "/signin", signin_page, name="web:signin")
    add("POST", "/signin", signin, name="web:signin-post")
    add("POST", "/signout", signout, name="web:signout")
    add("POST", "/language", language, name="web:language")
    add("GET", "/static/style.css", css, name="web:static")
    pages.add_routes(app)
    admin.add_routes(app)
    app.on_cleanup.append(lambda _app: _close(state))
    return state


async def _close(state: Web) -> None:
    state.accounts.close()


# --- the guard ----------------------------------------------------------------------------------

@web.middleware
async def guard(request: web.Request, handler):
    name = request.match_info.route.name or ""
    if not name.startswith("web:"):
        return await handler(request)
    state: Web = request.app[WEB]
    try:
        if name == "web:static":
            response = await handler(request)
        else:
            response = await _guarded(request, handler, name, state)
    except NotFound:
        response = render(request, "message.html", status=404, title="notfound.title",
                          body="notfound.body")
    except Forbidden:  # the role does not allow this page (refmesh.permissions)
        log.warning("web page %s refused: not for this role", name)
        response = render(request, "message.html", status=403, title="forbidden.title",
                          body="forbidden.body")
    except Paused as exc:  # the directory in force has expired: nothing was accepted
        log.warning("web page %s refused: %s", name, exc)
        response = render(request, "message.html", status=503, title="error.title",
                          body="error.body")
    except web.HTTPException as exc:  # e.g. a body over the size limit
        response = render(request, "message.html", status=exc.status, title="error.title",
                          body="error.body")
    except Exception as exc:  # never a traceback or a value in the page or the log
        log.error("web page %s failed: %s", name, type(exc).__name__)
        response = render(request, "message.html", status=500, title="error.title",
                          body="error.body")
    for header, value in HEADERS.items():
        response.headers[header] = value
    return response


async def _guarded(request: web.Request, handler, name: str, state: Web):
    token = request.cookies.get(state.cookie)
    session = state.accounts.session(token, state.now(), state.idle_ms, state.max_ms)
    request[SESSION] = session
    if session is None and name not in PUBLIC:
        nxt = request.path if request.method == "GET" else "/"
        response = signin_form(request, status=401,
                               notice="signin.expired" if token else None, next_path=nxt)
        if token:
            response.del_cookie(state.cookie, path="/")
        return response
    if request.method == "POST":
        form = await request.post()
        supplied = form.get("csrf")
        expected = session.csrf if session else pre_token(request, state)
        if not (isinstance(supplied, str) and expected
                and hmac.compare_digest(supplied.encode(), expected.encode())):
            log.warning("web page %s: form refused (missing or wrong CSRF token)", name)
            return render(request, "message.html", status=403, title="csrf.title",
                          body="csrf.body")
    return await handler(request)


# --- signing in and out, language --------------------------------------------------------------

def home_of(session) -> str:
    """Where an account starts: the administrator has no inbox."""
    return "/accounts" if session.role == permissions.ADMIN else "/inbox"


async def home(request: web.Request) -> web.Response:
    return see_other(home_of(session_of(request)))


def signin_form(request: web.Request, status: int = 200, notice: str | None = None,
                error: str | None = None, username: str = "", next_path: str = "/"):
    return render(request, "signin.html", status=status, notice=notice, error=error,
                  username=username, next_path=next_path)


async def signin_page(request: web.Request) -> web.Response:
    if session_of(request) is not None:
        return see_other(home_of(session_of(request)))
    return signin_form(request)


async def signin(request: web.Request) -> web.Response:
    state: Web = request.app[WEB]
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:1024]
    next_path = safe_next(form.get("next"))
    # by client address and in all, before any password is checked (in memory: refmesh.signin)
    throttled = state.throttle.attempt(request.remote or "", state.now())
    if throttled is not None:
        log.warning("web sign-in throttled (%s)", throttled)
        return signin_form(request, status=429, error="signin.throttled", username=username,
                           next_path=next_path)
    loop = asyncio.get_running_loop()
    # Argon2 takes tens of milliseconds and much memory on purpose: off the event loop.
    if not await loop.run_in_executor(None, state.accounts.verify, username, password,
                                      state.now()):
        # unknown, paused, disabled or a wrong password: one answer, after the same work
        log.info("web sign-in refused")
        return signin_form(request, status=401, error="signin.wrong", username=username,
                           next_path=next_path)
    old = request.cookies.get(state.cookie)
    if old:
        state.accounts.end_session(old)  # never carry a session id across a sign-in
    state.accounts.end_expired(state.now(), state.idle_ms, state.max_ms)
    session = state.accounts.start_session(username, state.now())
    log.info("web sign-in: %s", username)
    response = see_other("/" if next_path == "/signin" or (
        next_path == "/inbox" and session.role == permissions.ADMIN) else next_path)
    set_cookie(response, state, state.cookie, session.token)
    response.del_cookie(state.pre_cookie, path="/")
    return response


async def signout(request: web.Request) -> web.Response:
    state: Web = request.app[WEB]
    session = session_of(request)
    state.accounts.end_session(session.token)
    request[SESSION] = None
    response = signin_form(request, notice="signin.signed_out")
    response.del_cookie(state.cookie, path="/")
    return response


async def language(request: web.Request) -> web.Response:
    state: Web = request.app[WEB]
    form = await request.post()
    chosen = form.get("lang")
    response = see_other(safe_next(form.get("next")))
    if chosen in LANGUAGES:
        session = session_of(request)
        if session is not None:
            state.accounts.set_language(session.username, chosen)
        set_cookie(response, state, state.lang_cookie, chosen)
    return response


async def css(request: web.Request) -> web.Response:
    return web.Response(body=request.app[WEB].css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})
