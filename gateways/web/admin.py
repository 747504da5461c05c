"""The supervisor's record of access and the gateway administrator's accounts page.

The administrator changes roles and teams and disables or enables accounts; new accounts and
passwords stay with `refmesh users` (a password never travels through a page's form but the
sign-in). Disabling an account ends its sessions at once. Every change is in the record of
access with the administrator's name. Neither page shows case data: the record holds ids only.
"""
from __future__ import annotations

import logging

from aiohttp import web

from gateways.desk import Forbidden
from gateways.web.auth import AccountError
from gateways.web.site import WEB, Web, flash, render, see_other, session_of, who
from refmesh import permissions

log = logging.getLogger("refmesh.web")
SHOWN = 200  # entries of the record of access on the page, newest first


def add_routes(app: web.Application) -> None:
    add = app.router.add_route
    add("GET", "/access", access_page, name="web:access")
    add("GET", "/accounts", accounts_page, name="web:accounts")
    add("POST", "/accounts/{name}", change_account, name="web:account-post")


def _need(request: web.Request, action: str) -> None:
    if not permissions.may(who(request), action):
        raise Forbidden(f"{who(request).name} may not {action}")


async def access_page(request: web.Request) -> web.Response:
    state: Web = request.app[WEB]
    entries, intact = state.desk.recent_access(who(request), SHOWN)
    return render(request, "access.html", entries=entries, intact=intact, shown=SHOWN)


def _accounts(request: web.Request, errors: dict | None = None, status: int = 200):
    state: Web = request.app[WEB]
    return render(request, "accounts.html", status=status, users=state.accounts.users(),
                  roles=permissions.ROLES, errors=errors or {})


async def accounts_page(request: web.Request) -> web.Response:
    _need(request, "accounts")
    return _accounts(request)


async def change_account(request: web.Request) -> web.Response:
    _need(request, "accounts")
    state: Web = request.app[WEB]
    name = request.match_info["name"]
    form = await request.post()
    me, now = session_of(request).username, state.now()
    change = form.get("change")
    try:
        if name == me and change in ("disable", "role"):
            raise AccountError("you cannot disable your own account or change its role; ask "
                               "another administrator, or use `refmesh users`")
        if change == "role":
            state.accounts.set_role(name, str(form.get("role", "")), now, by=me)
        elif change == "team":
            state.accounts.set_team(name, str(form.get("team", "")).strip(), now, by=me)
        elif change == "disable":
            state.accounts.disable(name, now, by=me)
        elif change == "enable":
            state.accounts.enable(name, now, by=me)
        else:
            raise AccountError("choose a change: role, team, disable or enable")
    except AccountError as exc:
        return _accounts(request, {f"account-{name}": ("err.contract", {"problem": str(exc)})},
                         400)
    log.info("web: account %s changed (%s)", name, change)
    flash(request, "accounts.changed", user=name)
    return see_other("/accounts")
