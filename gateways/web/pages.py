"""The case worker's pages: inbox, one referral (answer it), send a referral (with the policy
preview first), sent referrals with their timelines, consent (record and withdraw), erasure
notices. Each handler reads the form, calls the gateway (the same operations as the JSON API),
and draws a page or redirects; none of them logs a value of the case."""
from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import urlencode

from aiohttp import web

from gateways.web import forms
from gateways.web.forms import Values
from gateways import access
from gateways.web.site import WEB, Web, flash, render, see_other, session_of, who
from refmesh import fields as catalogue
from refmesh import loop, schemas
from refmesh.errors import RecordError
from refmesh.loop import TransitionError

log = logging.getLogger("refmesh.web")
REASONS = tuple(r for r in schemas.symbols("StatusReason") if r != "PolicyRefused")
RECIPIENT_STATES = ("accepted", "in_progress", "completed", "rejected", "failed")
TOP_FIELDS = ("senderAgency", "recipientAgency", "purpose", "trmStage", "legalBasis",
              "consentId", "consentVersion", "subjectId", "caseRef", "senderCaseWorker")
PSEUDONYMS = frozenset({"subjectId", "consentId"})


def add_routes(app: web.Application) -> None:
    add = app.router.add_route
    add("GET", "/inbox", inbox, name="web:inbox")
    add("GET", "/referrals/{id}", referral, name="web:referral")
    add("POST", "/referrals/{id}/status", status, name="web:status")
    add("POST", "/referrals/{id}/assign", assign, name="web:assign")
    add("GET", "/send", send_page, name="web:send")
    add("POST", "/send", send, name="web:send-post")
    add("GET", "/outbox", outbox, name="web:outbox")
    add("GET", "/consents", consents_page, name="web:consents")
    add("POST", "/consents", record_consent, name="web:consents-post")
    add("POST", "/consents/{id}/withdraw", withdraw, name="web:withdraw")
    add("GET", "/erasures", erasures, name="web:erasures")
    add("POST", "/erasures/{id}/confirm", confirm_erasure, name="web:erasure-ack")


def _state(request: web.Request) -> Web:
    return request.app[WEB]


# --- inbox and one referral ----------------------------------------------------------------------

async def inbox(request: web.Request) -> web.Response:
    rows = _state(request).desk.referrals(who(request), "in")
    return render(request, "inbox.html", rows=rows)


def _shown(record: dict) -> tuple[list, list, list]:
    """(top-level fields with a value, [(section, [(field, value)])], names of the fields
    without a value): exactly what the record holds, in contract order."""
    top = [(name, record.get(name)) for name in TOP_FIELDS
           if record.get(name) not in (None, "", [])]
    sections = []
    missing = [name for name in TOP_FIELDS if record.get(name) in (None, "", [])]
    for section in ("service", "person", "victim", "needs"):
        part = record.get(section) or {}
        filled = []
        for n in catalogue.SECTION_FIELDS[section]:
            if part.get(n) in (None, "", []):
                missing.append(f"{section}.{n}")
            else:
                filled.append((f"{section}.{n}", part.get(n)))
        if filled:
            sections.append((section, filled))
    return top, sections, missing


def _actions(row: dict) -> list[str]:
    allowed = loop.NEXT.get(row["state"], set())
    if row["direction"] == "in":
        return [s for s in RECIPIENT_STATES if s in allowed]
    return ["revoked"] if "revoked" in allowed else []


async def referral(request: web.Request, errors: dict | None = None, status: int = 200
                   ) -> web.Response:
    state = _state(request)
    # ids are unique per sender: the links name the sender, for two referrals with one id
    row = state.desk.referral(who(request), request.match_info["id"], request.query.get("from"))
    top, sections, missing = _shown(row["record"])
    domain = state.domain
    with state.gateway.store.read() as db:
        workers, teams = access.workers(db), access.teams(db)
    if state.gateway.settings.web_default_team not in teams + [""]:
        teams = sorted([*teams, state.gateway.settings.web_default_team])
    return render(request, "referral.html", status=status, r=row, top=top, sections=sections,
                  missing=missing, actions=_actions(row), reasons=REASONS,
                  needs_reason=loop.NEEDS_REASON, pseudonyms=PSEUDONYMS, domain=domain,
                  errors=errors or {}, workers=workers, teams=teams)


async def status(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    rid = request.match_info["id"]
    new, reason = form.get("state"), form.get("reason") or None
    sender = state.desk.check(who(request), "status", rid, request.query.get("from"))
    row = state.gateway.store.referral(rid, sender)
    if new not in _actions(row):
        return await referral(request, {"state": ("err.required", {})}, 409)
    if new in loop.NEEDS_REASON and reason not in REASONS:
        return await referral(request, {f"reason-{new}": ("err.required", {})}, 400)
    try:
        state.desk.set_status(who(request), rid, new,
                              reason if new in loop.NEEDS_REASON else None, sender=row["sender"])
    except TransitionError as exc:
        return await referral(request, {"state": ("err.contract", {"problem": str(exc)})}, 409)
    log.info("web: referral %s set to %s", rid, new)
    flash(request, "detail.changed", enums=("state",), state=new,
          agency=state.agency_name(row["peer"]))
    shared = f"?{urlencode({'from': row['sender']})}" if row["shared"] else ""
    return see_other(f"/referrals/{rid}{shared}")


async def assign(request: web.Request) -> web.Response:
    """A supervisor assigns a referral to a case worker and/or a team."""
    state = _state(request)
    form = await request.post()
    rid = request.match_info["id"]
    try:
        done = state.desk.assign(who(request), rid, request.query.get("from"),
                                 str(form.get("username") or ""), str(form.get("team") or ""))
    except RecordError as exc:
        return await referral(request, {"assign": ("err.contract", {"problem": exc.problem})},
                              400)
    log.info("web: referral %s assigned", rid)
    flash(request, "assign.done", user=done["username"] or "—", team=done["team"] or "—")
    row = state.gateway.store.referral(rid, done["sender"])
    shared = f"?{urlencode({'from': row['sender']})}" if row["shared"] else ""
    return see_other(f"/referrals/{rid}{shared}")


# --- sending -------------------------------------------------------------------------------------

def in_force(consent: dict, now: int) -> bool:
    withdrawn = any(e["type"] == "Withdrawn" for e in consent["events"])
    return not withdrawn and consent["validFrom"] <= now and (
        consent["validUntil"] is None or now < consent["validUntil"])


def consent_state(consent: dict, now: int) -> str:
    if any(e["type"] == "Withdrawn" for e in consent["events"]):
        return "withdrawn"
    if consent["validUntil"] is not None and now >= consent["validUntil"]:
        return "expired"
    return "future" if now < consent["validFrom"] else "active"


def _recipients(state: Web) -> list[dict]:
    """Agencies a referral may go to: every member with a gateway, but this one, by country."""
    members = state.gateway.directory().members.values()
    return sorted((m for m in members if m["domain"] is not None and m["agencyId"] != state.me),
                  key=lambda m: (m["jurisdiction"], m["name"]))


def _send_form(request: web.Request, values: Values, errors: dict | None = None,
               preview=None, digest: str = "", notice: str | None = None, status: int = 200):
    state = _state(request)
    now = state.now()
    consents = [c for c in state.desk.consents(who(request)) if in_force(c, now)]
    recipient = values.get("recipientAgency")
    return render(request, "send.html", status=status, sections=forms.REFERRAL_SECTIONS,
                  values=values, errors=errors or {}, recipients=_recipients(state),
                  consents=consents, preview=preview, digest=digest, notice=notice,
                  recipient_name=state.agency_name(recipient) if recipient else "",
                  domain=state.domain)


async def send_page(request: web.Request) -> web.Response:
    _state(request).desk.need(who(request), "send")
    return _send_form(request, Values({"service.urgency": "Routine", "legalBasis": "Consent",
                                       "service.reason": "AdditionalServicesRequired"}))


def _digest(state: Web, session, draft: dict) -> str:
    """Ties a Send to the preview the case worker saw: any change needs a new preview."""
    return state.sign("preview", session.csrf, json.dumps(draft, sort_keys=True))


async def send(request: web.Request) -> web.Response:
    state, session = _state(request), session_of(request)
    form = await request.post()
    values = Values(form)
    now = state.now()
    consents = {c["consentId"]: c for c in state.desk.consents(who(request))
                if in_force(c, now)}
    recipients = {m["agencyId"] for m in _recipients(state)}
    draft, errors = forms.referral_from_form(values, consents, recipients)
    if errors:
        return _send_form(request, values, errors, status=400)
    consent = consents.get(draft["consentId"]) if draft["consentId"] else None
    preview = state.previewer.preview(draft, consent, now)
    digest = _digest(state, session, draft)
    if form.get("action") != "send":
        return _send_form(request, values, preview=preview, digest=digest)
    supplied = form.get("digest")
    if not (isinstance(supplied, str) and hmac.compare_digest(supplied, digest)):
        return _send_form(request, values, preview=preview, digest=digest,
                          notice="send.changed", status=409)
    if preview.state == "refused":
        return _send_form(request, values, preview=preview, digest=digest, status=409)
    try:
        sent = state.desk.submit(who(request), draft)
    except RecordError as exc:
        name = forms.field_of(exc.path, "Referral")
        return _send_form(request, values, {name if name in forms.REFERRAL_FIELDS else "_form":
                                            ("err.contract", {"problem": exc.problem})},
                          status=400)
    log.info("web: referral %s submitted for %s", sent["referralId"], sent["recipientAgency"])
    flash(request, "send.sent", id=sent["referralId"],
          agency=state.agency_name(sent["recipientAgency"]))
    return see_other(f"/referrals/{sent['referralId']}#main")


async def outbox(request: web.Request) -> web.Response:
    rows = _state(request).desk.timelines(who(request))
    return render(request, "outbox.html", rows=rows)


# --- consent -------------------------------------------------------------------------------------

def _agencies(state: Web) -> list[dict]:
    return _recipients(state)


def _consents_form(request: web.Request, values: Values, errors: dict | None = None,
                   status: int = 200) -> web.Response:
    state = _state(request)
    now = state.now()
    principal = who(request)
    listed = [(c, consent_state(c, now)) for c in state.desk.consents(principal)]
    withdrawable = {c["consentId"] for c, _ in listed
                    if state.desk.may_withdraw(principal, c["consentId"])}
    return render(request, "consents.html", status=status, fields=forms.CONSENT_FIELDS,
                  values=values, errors=errors or {}, agencies=_agencies(state),
                  consents=listed, channels=schemas.symbols("ConsentChannel"),
                  withdrawable=withdrawable)


async def consents_page(request: web.Request) -> web.Response:
    state = _state(request)
    return _consents_form(request, Values(forms.consent_defaults(state.now(), state.zone)))


async def record_consent(request: web.Request) -> web.Response:
    state = _state(request)
    values = Values(await request.post())
    agencies = {a["agencyId"] for a in _agencies(state)}
    draft, errors = forms.consent_from_form(values, agencies, state.me, state.now(),
                                            state.zone)
    if errors:
        return _consents_form(request, values, errors, status=400)
    try:
        recorded = state.desk.record_consent(who(request), draft)
    except RecordError as exc:
        name = forms.field_of(exc.path, "Consent")
        return _consents_form(request, values, {name: ("err.contract",
                                                       {"problem": exc.problem})}, 400)
    log.info("web: consent recorded")  # never its id: it identifies a person
    flash(request, "consent.recorded", id=recorded["consentId"])
    return see_other("/consents#main")  # the form's #record would otherwise carry over


async def withdraw(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    cid = request.match_info["id"]
    state.gateway.store.consent(cid)  # NotFound: the 404 page
    if not state.desk.may_withdraw(who(request), cid):
        state.desk.withdraw(who(request), cid, "")  # refused: recorded, the 403 page
    channel = form.get("channel")
    error = None
    if form.get("confirm") != "yes":
        error = ("consent.confirm_needed", {})
    elif channel not in schemas.symbols("ConsentChannel"):
        error = ("err.required", {})
    else:
        try:
            state.desk.withdraw(who(request), cid, channel)
        except TransitionError as exc:
            error = ("err.contract", {"problem": str(exc)})
    if error is not None:
        values = Values(forms.consent_defaults(state.now(), state.zone))
        return _consents_form(request, values, {f"withdraw-{cid}": error}, status=400)
    log.info("web: consent withdrawn")
    flash(request, "consent.withdrawn_msg", id=cid)
    return see_other("/consents")


# --- erasure notices -----------------------------------------------------------------------------

async def erasures(request: web.Request) -> web.Response:
    state = _state(request)
    return render(request, "erasures.html", notices=state.desk.erasures(who(request)),
                  acks=state.accounts.erasure_acks())


async def confirm_erasure(request: web.Request) -> web.Response:
    state, session = _state(request), session_of(request)
    notice = request.match_info["id"]
    state.desk.erasure_ack(who(request), notice, lambda: state.accounts.acknowledge_erasure(
        notice, session.username, state.now()))
    flash(request, "erasures.acked_msg")
    return see_other("/erasures")
