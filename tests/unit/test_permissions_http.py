"""Every cell of the permission table (refmesh.permissions.TABLE, shown in docs/case-workers.md),
through the real HTTP handlers: the roles' cells on the web page (signed in as an account with
that role), the scopes' cells on the API (a token with that scope alone). "yes" is tried on
someone else's referral or consent, "own" on one's own (done) and someone else's (hidden or
refused), "no" on one's own (refused)."""
from __future__ import annotations

import json

import pytest

from gateways import access
from refmesh import permissions, samples
from refmesh.permissions import NO, OWN, YES, Principal
from tests.unit.test_web_pages import consent_form
from tests.unit.test_web_security import pairs, valid_send
from tests.unit.webfix import HOTLINE, NCC, PASSWORD, SHELTER, deliver

USERS = {"caseworker": ("worker", "intake"), "supervisor": ("boss", ""), "admin": ("it", "")}
CELLS = [(action, column) for action in permissions.ACTIONS for column in permissions.COLUMNS]


class World:
    """The hotline with one account per role (and a case worker of another team), a referral
    assigned to the case worker and one to the other team, a consent each recorded, an erasure
    request, and (for a token column) a token with that scope alone."""

    def __init__(self, fix, column: str) -> None:
        self.fix, self.column = fix, column
        accounts, now = fix.web.accounts, fix.clock()
        for role, (name, team) in USERS.items():
            accounts.add_user(name, PASSWORD, now, role=role, team=team)
        accounts.add_user("other", PASSWORD, now, team="legal")
        desk, boss = fix.web.desk, Principal("boss", permissions.SUPERVISOR)
        self.mine = fix.arrive(1)["referralId"]
        self.theirs = fix.arrive(2)["referralId"]
        desk.assign(boss, self.mine, None, "worker", None)
        desk.assign(boss, self.theirs, None, "other", "legal")
        gone = fix.arrive(3)["referralId"]
        notice = {"noticeId": "notice-1", "kind": "Request", "consentId": "ps-0011",
                  "referralIds": [gone], "reason": "ConsentWithdrawn", "requestedBy": NCC,
                  "at": now}
        assert deliver(fix.gateway, "e-1", "ErasureNotice", NCC, notice, now).new
        self.token = self.scope = None
        if column.startswith("token:"):
            self.scope = column.split(":")[1]
            self.token = accounts.add_token("reporting", [self.scope], now)
            me = Principal("reporting", scopes=frozenset({self.scope}))
        else:
            me = Principal(USERS[column][0], column, USERS[column][1])
        self.my_consent = self._recorded(4, me.actor)
        self.their_consent = self._recorded(5, "other")
        if self.token is None:
            self.client = fix.client()
            page = self.client.signin(USERS[column][0])
            assert page.status == 200, page.text
            self.csrf = page.csrf

    def _recorded(self, n: int, actor: str) -> str:
        """A consent recorded here by ``actor`` (as the desk keeps it)."""
        cid = self.fix.gateway.record_consent(self._consent(n))["consentId"]
        with self.fix.gateway.store.write() as db:
            access.set_author(db, "consent", cid, actor)
        return cid

    def _consent(self, n: int) -> dict:
        consent = samples.consent(n, controller=HOTLINE, valid_from=self.fix.clock() - 1000)
        consent.update(recipientRoles=["CentralGovernmentOrganisation", "NGO"],
                       dataCategories=["Identity", "Demographics", "SupportNeeds",
                                       "VictimContext", "ReferralDetails"])
        return consent

    # --- the web page (roles) ------------------------------------------------------------

    def web(self, method: str, path: str, data=None):
        page = self.client._page(method, path, data=data, allow_redirects=False)
        return page

    def web_outcome(self, action: str, target: str) -> str:
        rid = self.mine if target == "own" else self.theirs
        cid = self.my_consent if target == "own" else self.their_consent
        post = {"csrf": self.csrf}
        if action == "list":
            page = self.web("GET", "/inbox")
            if page.status != 200:
                return _refused(page.status)
            return "done" if rid in page.text else "hidden"
        calls = {
            "view": ("GET", f"/referrals/{rid}", None),
            "status": ("POST", f"/referrals/{rid}/status", {**post, "state": "accepted"}),
            "assign": ("POST", f"/referrals/{rid}/assign", {**post, "team": "intake"}),
            "consents": ("GET", "/consents", None),
            "consent": ("POST", "/consents", pairs(consent_form(self.csrf))),
            "withdraw": ("POST", f"/consents/{cid}/withdraw",
                         {**post, "channel": "Phone", "confirm": "yes"}),
            "erasures": ("GET", "/erasures", None),
            "erasure-ack": ("POST", "/erasures/notice-1/confirm", post),
            "access": ("GET", "/access", None),
            "accounts": ("POST", "/accounts/other", {**post, "change": "team", "team": "x"}),
        }
        if action == "send":
            page = self.web("POST", "/send", pairs(valid_send(self.csrf, self.my_consent)))
            if page.status != 200:
                return _refused(page.status)
            page = self.web("POST", "/send", pairs(valid_send(
                self.csrf, self.my_consent, action="send", digest=page.digest)))
        else:
            method, path, data = calls[action]
            page = self.web(method, path, data)
        if page.status in (200, 303):
            return "done"
        return _refused(page.status)

    # --- the API (scopes) ----------------------------------------------------------------

    def api(self, method: str, path: str, body=None) -> int:
        async def call():
            async with self.fix.clients[0].session.request(
                    method, self.fix.server.make_url(path), data=None if body is None else
                    json.dumps(body), headers={"Authorization": f"Bearer {self.token}",
                                               "Content-Type": "application/json"}) as r:
                return r.status, await r.text()
        status, text = self.fix.loop.run_until_complete(call())
        return status

    def api_outcome(self, action: str, target: str) -> str:
        if not self.fix.clients:
            self.fix.client()
        rid = self.mine if target == "own" else self.theirs
        cid = self.my_consent if target == "own" else self.their_consent
        referral = samples.referral(referral_id="api-sent-1", sender=HOTLINE, recipient=SHELTER,
                                    created_at=self.fix.clock(), n=6)
        calls = {
            "list": ("GET", "/v1/inbox", None),
            "view": ("GET", f"/v1/referrals/{rid}", None),
            "status": ("POST", f"/v1/referrals/{rid}/status", {"state": "accepted"}),
            "send": ("POST", "/v1/referrals", referral),
            "assign": ("POST", f"/v1/referrals/{rid}/assign", {"team": "intake"}),
            "consents": ("GET", "/v1/consents", None),
            "consent": ("POST", "/v1/consents", self._consent(7)),
            "withdraw": ("POST", f"/v1/consents/{cid}/withdraw", {"channel": "Phone"}),
            "erasures": ("GET", "/v1/erasures", None),
            "erasure-ack": ("POST", "/v1/erasures/notice-1/confirm", {}),  # no such route
            "access": ("GET", "/v1/access", None),
            "accounts": ("POST", "/v1/accounts/other", {"team": "x"}),  # no such route
        }
        status = self.api(*calls[action])
        if status in (200, 202):
            return "done"
        return _refused(status)


def _refused(status: int) -> str:
    return {403: "forbidden", 404: "hidden", 405: "forbidden"}.get(status, f"status {status}")


def test_the_cells_tested_are_the_whole_table():
    assert len(CELLS) == len(permissions.ACTIONS) * len(permissions.COLUMNS) == 72


@pytest.mark.parametrize("action,column", CELLS, ids=[f"{a}-{c}" for a, c in CELLS])
def test_each_cell_of_the_permission_table(hotline, action, column):
    cell = permissions.TABLE[action][1][column]
    world = World(hotline, column)
    outcome = world.api_outcome if world.token else world.web_outcome
    if cell == YES:
        assert outcome(action, "other") == "done"
    elif cell == OWN:
        assert outcome(action, "own") == "done"
        assert outcome(action, "other") in ("hidden", "forbidden")
    else:
        assert cell == NO
        assert outcome(action, "own") in ("hidden", "forbidden")
