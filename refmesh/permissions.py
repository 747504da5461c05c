"""Who may do what at a gateway: the roles of its web accounts, the scopes of its API tokens,
and which referrals a case worker sees. Pure decisions; the web page and the API carry them out
(gateways/desk.py), and the permission table of docs/case-workers.md is ``TABLE``.

Roles (a web account has one):

- ``caseworker``: the referrals assigned to them or to their team, and those they sent; sends
  referrals, records consents, withdraws the consents they recorded themselves.
- ``supervisor``: the agency's whole inbox and outbox; assigns (and reassigns) a referral to a
  case worker or a team, withdraws any consent, reads the record of access.
- ``admin``: the gateway administrator: accounts (roles, teams, disabling), never case data.

Scopes (an API token has one or more; the agency's token from the environment has all three):

- ``read``: the agency's referrals and consents, read only (reporting);
- ``send``: submit referrals, change statuses, record consents, withdraw those it recorded;
- ``admin``: assign referrals, withdraw any consent, read the record of access.

A token acts for the agency's systems, not for a person: it is not scoped to a team.

Received referrals need an assignment to reach a case worker: one that nobody assigned belongs
to the gateway's default team (``web_default_team``, "intake" unless the settings say
otherwise; "" leaves it unassigned, seen by supervisors only until one of them assigns it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CASEWORKER, SUPERVISOR, ADMIN = "caseworker", "supervisor", "admin"
ROLES = (CASEWORKER, SUPERVISOR, ADMIN)
SCOPES = ("read", "send", "admin")
#: the team that accounts made before roles existed belong to, and the default team's default
DEFAULT_TEAM = "intake"

# The answer of a cell: no, yes (whatever the referral or consent), or only what is theirs
# (a referral they see; a consent they recorded).
NO, YES, OWN = "no", "yes", "own"

#: action -> (what it is, in words for docs/case-workers.md; {role or "token:<scope>": answer})
TABLE: dict[str, tuple[str, dict[str, str]]] = {
    "list": ("list received and sent referrals",
             {CASEWORKER: OWN, SUPERVISOR: YES, ADMIN: NO,
              "token:read": YES, "token:send": NO, "token:admin": NO}),
    "view": ("open a referral: its case data and timeline",
             {CASEWORKER: OWN, SUPERVISOR: YES, ADMIN: NO,
              "token:read": YES, "token:send": NO, "token:admin": NO}),
    "status": ("change a referral's status (answer one received, revoke one sent)",
               {CASEWORKER: OWN, SUPERVISOR: YES, ADMIN: NO,
                "token:read": NO, "token:send": YES, "token:admin": NO}),
    "send": ("send a referral",
             {CASEWORKER: YES, SUPERVISOR: YES, ADMIN: NO,
              "token:read": NO, "token:send": YES, "token:admin": NO}),
    "assign": ("assign a referral to a case worker or a team",
               {CASEWORKER: NO, SUPERVISOR: YES, ADMIN: NO,
                "token:read": NO, "token:send": NO, "token:admin": YES}),
    "consents": ("read the consents recorded here",
                 {CASEWORKER: YES, SUPERVISOR: YES, ADMIN: NO,
                  "token:read": YES, "token:send": NO, "token:admin": NO}),
    "consent": ("record a consent",
                {CASEWORKER: YES, SUPERVISOR: YES, ADMIN: NO,
                 "token:read": NO, "token:send": YES, "token:admin": NO}),
    "withdraw": ("withdraw a consent (own: one this account or token recorded)",
                 {CASEWORKER: OWN, SUPERVISOR: YES, ADMIN: NO,
                  "token:read": NO, "token:send": OWN, "token:admin": YES}),
    "erasures": ("read erasure notices",
                 {CASEWORKER: YES, SUPERVISOR: YES, ADMIN: NO,
                  "token:read": YES, "token:send": NO, "token:admin": NO}),
    "erasure-ack": ("confirm that copies outside refmesh are erased",
                    {CASEWORKER: YES, SUPERVISOR: YES, ADMIN: NO,
                     "token:read": NO, "token:send": NO, "token:admin": NO}),
    "access": ("read the record of access",
               {CASEWORKER: NO, SUPERVISOR: YES, ADMIN: NO,
                "token:read": NO, "token:send": NO, "token:admin": YES}),
    "accounts": ("manage accounts: role, team, disable, enable",
                 {CASEWORKER: NO, SUPERVISOR: NO, ADMIN: YES,
                  "token:read": NO, "token:send": NO, "token:admin": NO}),
}
ACTIONS = tuple(TABLE)
COLUMNS = (*ROLES, *(f"token:{s}" for s in SCOPES))


@dataclass(frozen=True)
class Principal:
    """Who asks: a web account (``role``, ``team``) or an API token (``scopes``)."""

    name: str
    role: str | None = None  # a web account's role; None for a token
    team: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)  # a token's scopes

    @property
    def is_token(self) -> bool:
        return self.role is None

    @property
    def actor(self) -> str:
        """How the record of access and the authorship tables name it: ``token:<name>`` for a
        token (so that no account can take a token's name), else the username."""
        return f"token:{self.name}" if self.is_token else self.name

    def columns(self) -> tuple[str, ...]:
        return tuple(f"token:{s}" for s in sorted(self.scopes)) if self.is_token else (
            (self.role,) if self.role in ROLES else ())


@dataclass(frozen=True)
class Facts:
    """What decides whether a principal sees one referral: its direction, who sent it here
    (``author``: the actor that submitted it; None for a received one or one sent before
    authorship was kept) and whom it is assigned to (``user`` and/or ``team``)."""

    direction: str
    author: str | None = None
    user: str | None = None
    team: str | None = None


def effective(facts: Facts, default_team: str) -> Facts:
    """A received referral nobody assigned belongs to the default team ("" : to nobody)."""
    if facts.direction == "in" and facts.user is None and facts.team is None and default_team:
        return Facts(facts.direction, facts.author, None, default_team)
    return facts


def sees(who: Principal, facts: Facts, default_team: str = DEFAULT_TEAM) -> bool:
    """Whether ``who`` may see a referral at all (the answer of "own" cells for referrals)."""
    answer = _best(who, "view")
    if answer == YES:
        return True
    if answer == NO:
        return False
    facts = effective(facts, default_team)
    return (facts.author == who.actor or facts.user == who.name
            or (bool(who.team) and facts.team == who.team))


def _best(who: Principal, action: str) -> str:
    """The widest answer of the principal's columns for ``action`` (a token's scopes add up)."""
    cells = TABLE[action][1]
    answers = {cells.get(c, NO) for c in who.columns()}
    return YES if YES in answers else OWN if OWN in answers else NO


def may(who: Principal, action: str, *, facts: Facts | None = None,
        recorded_by: str | None = None, default_team: str = DEFAULT_TEAM) -> bool:
    """Whether ``who`` may do ``action``; for an "own" cell, on this referral (``facts``) or
    this consent (``recorded_by``: the actor that recorded it). Without either, an "own" cell
    answers whether the principal may do it to some of them (a list, filtered one by one)."""
    if action not in TABLE:
        raise KeyError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    answer = _best(who, action)
    if answer != OWN:
        return answer == YES
    if facts is not None:
        return sees(who, facts, default_team)
    if recorded_by is not None:
        return recorded_by == who.actor
    return True


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_scopes(scopes) -> frozenset[str]:
    chosen = frozenset(scopes)
    unknown = sorted(chosen - set(SCOPES))
    if unknown or not chosen:
        raise ValueError(f"scopes must be one or more of {', '.join(SCOPES)}"
                         + (f" (not {', '.join(unknown)})" if unknown else ""))
    return chosen


TEAM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def check_team(team: str) -> str:
    """A team name: "" (none) or up to 32 lower-case letters, digits, dot, dash, underscore."""
    if not isinstance(team, str) or len(team) > 32 or not set(team) <= TEAM_CHARS:
        raise ValueError(f"team {team!r} must be up to 32 lower-case letters, digits, dot, "
                         "dash or underscore (or empty: no team)")
    return team


def markdown_table() -> str:
    """The permission table as docs/case-workers.md shows it (a unit test keeps the two equal)."""
    head = ["action", *COLUMNS]
    rows = [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}"]
    for action, (words, cells) in TABLE.items():
        rows.append(f"| `{action}`: {words} | " + " | ".join(cells[c] for c in COLUMNS) + " |")
    return "\n".join(rows)
