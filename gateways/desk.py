"""What case workers and programs do at a gateway, checked and recorded: the one place where the
web page and the API carry out refmesh.permissions and write the record of access.

Each operation asks ``permissions.may`` first. An action the principal's role or scopes never
allow is ``Forbidden`` (403); a referral or consent the principal may not see is answered as if
it did not exist (``NotFound``, 404), so ids cannot be probed. Every view of a referral's case
data, every change and every list is recorded (gateways/access.py) in the transaction of the
change; a refused attempt on a referral or consent is recorded too (``<action>-refused``).
"""
from __future__ import annotations

from typing import Callable

from gateways import access
from gateways.store import Ambiguous, NotFound
from kafkaedge.loading import now_ms
from refmesh import permissions
from refmesh.errors import MeshError, RecordError
from refmesh.permissions import Facts, Principal


class Forbidden(MeshError, PermissionError):
    """The principal's role or scopes do not allow this action; says which do."""


def _forbidden(who: Principal, action: str) -> Forbidden:
    words, cells = permissions.TABLE[action]
    allowed = [c for c in permissions.COLUMNS if cells[c] != permissions.NO]
    return Forbidden(f"{'token' if who.is_token else 'account'} {who.name} may not {words}: "
                     f"that needs {' or '.join(allowed) or 'nobody'}")


class Desk:
    """The gateway's operations for one principal at a time (``who``)."""

    def __init__(self, gateway, clock: Callable[[], int] = now_ms) -> None:
        self.gateway = gateway  # read lazily: the OpenAPI test builds the API with a stand-in
        self.clock = clock

    @property
    def store(self):
        return self.gateway.store

    @property
    def default_team(self) -> str:
        return self.gateway.settings.web_default_team

    def need(self, who: Principal, action: str) -> None:
        if not permissions.may(who, action):
            raise _forbidden(who, action)

    def _record(self, who: Principal, action: str, kind: str, ref: str, sender: str = "",
                db=None) -> None:
        if db is not None:
            access.record(db, self.clock(), who.actor, action, kind, ref, sender)
            return
        with self.store.write() as db:
            access.record(db, self.clock(), who.actor, action, kind, ref, sender)

    # --- referrals -----------------------------------------------------------------------------

    def _facts(self, referral_id: str, sender: str | None) -> tuple[str, Facts]:
        """(sender, facts) of the one referral meant (NotFound as the store says)."""
        sender = self.store.sender_of(referral_id, sender)
        with self.store.read() as db:
            return sender, access.facts_of(db, sender, referral_id)

    def check(self, who: Principal, action: str, referral_id: str,
                 sender: str | None) -> str:
        """The referral's sender, if ``who`` may do ``action`` to it; else NotFound (a
        referral they may not see) or Forbidden (an action they may never do)."""
        self.need(who, action)
        try:
            sender, facts = self._facts(referral_id, sender)
        except Ambiguous:  # ids are unique per sender: of those this principal may act on
            return self._one_of(who, action, referral_id)
        except NotFound:
            raise NotFound(f"no referral {referral_id} at {self.gateway.settings.agency}") \
                from None
        if not permissions.may(who, action, facts=facts, default_team=self.default_team):
            self._record(who, f"{action}-refused", "referral", referral_id, sender)
            raise NotFound(f"no referral {referral_id} at {self.gateway.settings.agency}")
        return sender

    def _one_of(self, who: Principal, action: str, referral_id: str) -> str:
        """The sender of the one referral with this id that ``who`` may act on; Ambiguous
        (naming those senders only) when several, NotFound when none."""
        with self.store.read() as db:
            known = access.facts(db)
        senders = sorted(s for (s, rid), facts in known.items() if rid == referral_id and
                         permissions.may(who, action, facts=facts,
                                         default_team=self.default_team))
        if len(senders) == 1:
            return senders[0]
        if senders:
            raise Ambiguous(f"{len(senders)} referrals have the id {referral_id} (from "
                            f"{', '.join(senders)}): name the sender")
        raise NotFound(f"no referral {referral_id} at {self.gateway.settings.agency}")

    def referrals(self, who: Principal, direction: str) -> list[dict]:
        """The received (``in``) or sent (``out``) referrals ``who`` sees, newest first."""
        self.need(who, "list")
        rows = self.store.referrals(direction)
        with self.store.read() as db:
            known = access.facts(db, direction)
        shown = [r for r in rows if permissions.sees(
            who, known.get((r["sender"], r["referral_id"]), Facts(direction)),
            self.default_team)]
        self._record(who, "list", "list", "inbox" if direction == "in" else "outbox")
        return shown

    def referral(self, who: Principal, referral_id: str, sender: str | None = None) -> dict:
        """One referral with its case data and timeline (recorded as a view)."""
        sender = self.check(who, "view", referral_id, sender)
        row = self.store.referral(referral_id, sender)
        with self.store.read() as db:
            row["assignment"] = access.assignment(db, sender, referral_id)
        if row["assignment"] is None and row["direction"] == "in" and self.default_team:
            row["assignment"] = {"username": None, "team": self.default_team, "by": None,
                                 "at": None}
        self._record(who, "view", "referral", referral_id, sender)
        return row

    def timelines(self, who: Principal) -> list[dict]:
        """The sent referrals ``who`` sees, each with its timeline (states, no case data)."""
        rows = self.referrals(who, "out")
        return [{**r, "history": self.store.referral(r["referral_id"], r["sender"])["history"]}
                for r in rows]

    def set_status(self, who: Principal, referral_id: str, state: str, reason: str | None = None,
                   detail: str | None = None, sender: str | None = None) -> dict:
        sender = self.check(who, "status", referral_id, sender)
        with self.store.batch():
            status = self.gateway.set_status(referral_id, state, reason, detail, sender)
            self._record(who, f"status:{state}", "referral", referral_id, sender)
        return status

    def submit(self, who: Principal, referral: dict) -> dict:
        self.need(who, "send")
        with self.store.batch():
            sent = self.gateway.submit_referral(referral)
            with self.store.write() as db:
                access.set_author(db, "referral", sent["referralId"], who.actor)
                self._record(who, "send", "referral", sent["referralId"], sent["senderAgency"],
                             db)
        return sent

    def assign(self, who: Principal, referral_id: str, sender: str | None,
               username: str | None, team: str | None) -> dict:
        """Assign a referral to a case worker and/or a team (both None: back to the default)."""
        sender = self.check(who, "assign", referral_id, sender)
        username, team = username or None, team or None
        if team is not None:
            try:
                permissions.check_team(team)
            except ValueError as exc:
                raise RecordError("team", str(exc)) from None
        with self.store.write() as db:
            if username is not None and username not in dict(access.workers(db)):
                raise RecordError("username", f"no case worker or supervisor {username} (or "
                                              "the account is disabled)")
            access.assign(db, sender, referral_id, username, team, who.actor, self.clock())
            self._record(who, "assign", "referral", referral_id, sender, db)
        return {"referralId": referral_id, "sender": sender, "username": username,
                "team": team}

    # --- consents ------------------------------------------------------------------------------

    def consents(self, who: Principal) -> list[dict]:
        self.need(who, "consents")
        listed = self.store.consents()
        self._record(who, "list", "list", "consents")
        return listed

    def consent(self, who: Principal, consent_id: str) -> dict:
        self.need(who, "consents")
        found = self.store.consent(consent_id)
        self._record(who, "view", "consent", consent_id)
        return found

    def recorded_by(self, consent_id: str) -> str | None:
        with self.store.read() as db:
            return access.author(db, "consent", consent_id)

    def record_consent(self, who: Principal, draft: dict) -> dict:
        self.need(who, "consent")
        with self.store.batch():
            recorded = self.gateway.record_consent(draft)
            with self.store.write() as db:
                access.set_author(db, "consent", recorded["consentId"], who.actor)
                self._record(who, "consent", "consent", recorded["consentId"], db=db)
        return recorded

    def may_withdraw(self, who: Principal, consent_id: str) -> bool:
        return permissions.may(who, "withdraw", recorded_by=self.recorded_by(consent_id) or "")

    def withdraw(self, who: Principal, consent_id: str, channel: str) -> dict:
        self.need(who, "withdraw")
        self.store.consent(consent_id)  # NotFound first
        if not self.may_withdraw(who, consent_id):
            self._record(who, "withdraw-refused", "consent", consent_id)
            raise Forbidden(f"consent {consent_id} was recorded by someone else: a supervisor "
                            "withdraws it")
        with self.store.batch():
            withdrawn = self.gateway.withdraw_consent(consent_id, channel)
            self._record(who, "withdraw", "consent", consent_id)
        return withdrawn

    # --- erasure notices -----------------------------------------------------------------------

    def erasures(self, who: Principal) -> list[dict]:
        self.need(who, "erasures")
        notices = self.store.erasures()
        self._record(who, "list", "list", "erasures")
        return notices

    def erasure_ack(self, who: Principal, notice_id: str, acknowledge) -> None:
        """``acknowledge()`` keeps the acknowledgement (gateways/web/auth.py)."""
        self.need(who, "erasure-ack")
        if not any(e["notice_id"] == notice_id and e["kind"] == "Request"
                   for e in self.store.erasures()):
            raise NotFound(f"no erasure request {notice_id}")
        acknowledge()
        self._record(who, "erasure-ack", "record", notice_id)

    # --- the record of access ------------------------------------------------------------------

    def access_log(self, who: Principal, after: int = -1, limit: int = 200) -> dict:
        """Entries after ``after`` (oldest first), whether the whole chain holds, and its head.
        Reading it is recorded too."""
        self.need(who, "access")
        with self.store.read() as db:
            _, head, broken = access.check(db)
            shown = access.entries(db, after, limit)
        self._record(who, "read", "record", "access")
        return {"entries": shown, "head": str(head), "intact": broken is None,
                "problem": None if broken is None else
                f"entry {broken.seq if broken.seq is not None else broken.index}: "
                f"{broken.reason}"}

    def recent_access(self, who: Principal, limit: int = 200) -> tuple[list[dict], bool]:
        """The newest entries, newest first, and whether the chain holds (the web page)."""
        self.need(who, "access")
        with self.store.read() as db:
            _, _, broken = access.check(db)
            shown = access.newest(db, limit)
        self._record(who, "read", "record", "access")
        return shown, broken is None
