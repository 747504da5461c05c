"""What the web page's handlers share: the per-process state (``Web``), drawing a page, cookies,
redirects and one-shot messages."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from gateways.web.auth import Accounts, Session
from gateways.web.i18n import LANGUAGES, Text
from gateways.web.preview import Previewer
from refmesh import permissions, topology

WEB = web.AppKey("web", object)
SESSION = "refmesh.session"
SAFE_NEXT = re.compile(r"/[A-Za-z0-9/_.-]*")


@dataclass
class Web:
    """What the page's handlers share (one per gateway process)."""

    gateway: object
    accounts: Accounts
    previewer: Previewer
    templates: jinja2.Environment
    clock: Callable[[], int]
    zone: ZoneInfo
    idle_ms: int
    max_ms: int
    secure: bool
    cookie: str  # session cookie; named per agency, as cookies do not tell ports apart
    pre_cookie: str
    lang_cookie: str
    secret: bytes  # per process: pre-session CSRF tokens and preview digests
    css: bytes
    desk: object = None  # gateways.desk.Desk: every case operation, checked and recorded
    throttle: object = None  # refmesh.signin.Throttle: sign-in attempts by address and in all

    @property
    def me(self) -> str:
        return self.gateway.settings.agency

    @property
    def domain(self) -> str:
        """This agency's policy domain (the one that decides what leaves)."""
        return topology.domain_of(self.gateway.directory(), self.me)

    def now(self) -> int:
        return self.clock()

    def agency_name(self, agency_id: str) -> str:
        member = self.gateway.directory().members.get(agency_id)
        return member["name"] if member else agency_id

    def when(self, ms: int | None) -> str:
        if ms is None:
            return ""
        return ltr(dt.datetime.fromtimestamp(ms / 1000, self.zone).strftime("%Y-%m-%d %H:%M"))

    def sign(self, *parts: str) -> str:
        return hmac.new(self.secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def ltr(text) -> str:
    """Dates and times keep their order inside right-to-left text (LRI ... PDI)."""
    return f"\u2066{text}\u2069"


def pre_token(request: web.Request, state: Web) -> str | None:
    """The CSRF token of the sign-in and language forms before a session exists."""
    pre = request.cookies.get(state.pre_cookie)
    return state.sign("pre", pre) if pre else None


# --- drawing pages ------------------------------------------------------------------------------

def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def who(request: web.Request):
    """The signed-in account as a refmesh.permissions.Principal (its role and team)."""
    return session_of(request).principal


def language_of(request: web.Request) -> str:
    session = session_of(request)
    if session is not None:
        return session.language
    wanted = request.cookies.get(request.app[WEB].lang_cookie)
    return wanted if wanted in LANGUAGES else "en"


def render(request: web.Request, template: str, status: int = 200, **context
           ) -> web.Response:
    state: Web = request.app[WEB]
    session = session_of(request)
    text = Text(language_of(request))
    flash = None
    if session is not None and session.flash:
        try:
            stored = json.loads(session.flash)
            shown = {k: text.enum(v) if k in stored.get("e", ()) else v
                     for k, v in stored.get("v", {}).items()}
            flash = text(stored["k"], **shown)
        except (ValueError, KeyError, TypeError):
            flash = None
    pre = None
    csrf = session.csrf if session else None
    if session is None:
        pre = request.cookies.get(state.pre_cookie) or secrets.token_urlsafe(32)
        csrf = state.sign("pre", pre)
    html = state.templates.get_template(template).render(
        _=text, session=session, csrf=csrf, may=_may(session), path=request.path, flash=flash,
        me=state.me, me_name=state.agency_name(state.me), agency=state.agency_name,
        when=state.when, zone=state.zone.key, languages=LANGUAGES, **context)
    response = web.Response(text=html, content_type="text/html", charset="utf-8",
                            status=status)
    if pre is not None and pre != request.cookies.get(state.pre_cookie):
        set_cookie(response, state, state.pre_cookie, pre)
    return response


def _may(session):
    """``may("assign")`` in templates: whether the signed-in account's role allows an action
    at all (the handlers decide on each referral and consent)."""
    principal = session.principal if session is not None else None
    return lambda action: principal is not None and permissions.may(principal, action)


def set_cookie(response: web.StreamResponse, state: Web, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict",
                        secure=state.secure)


def see_other(location: str) -> web.Response:
    """Answer a POST with a redirect to a page (the browser then GETs it)."""
    return web.Response(status=303, headers={"Location": location})


def flash(request: web.Request, key: str, enums: tuple[str, ...] = (), **values: str) -> None:
    """A message for the next page: an i18n key with ids or names, never case data; the
    values named in ``enums`` are symbols, shown translated."""
    session = session_of(request)
    if session is not None:
        request.app[WEB].accounts.flash(session.token, json.dumps(
            {"k": key, "v": values, "e": list(enums)}))


def safe_next(value) -> str:
    if isinstance(value, str) and SAFE_NEXT.fullmatch(value) and not value.startswith("//"):
        return value
    return "/"
