"""The send form's preview: what this recipient will receive, decided as `refmesh policy explain`
decides it (``refmesh.decide.explain`` with the policy domain's signed policy, the consent as
this gateway recorded it, and the directory the gateway trusts).

The policy file is the optional gateway setting ``policy``; it is verified against the directory
as the agents verify it (signed by the domain, key not revoked) and re-read when it changes.
Pseudonyms depend on the domain's secret, which a gateway does not hold: a throwaway key gives
the right shape, and the preview shows field names and actions, never the pseudonyms.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from kafkaedge.loading import DirectoryRef
from kafkaedge.policy_files import read_policy
from refmesh import decide, records, topology
from refmesh.decisions import Deny
from refmesh.errors import MeshError


@dataclass(frozen=True)
class Row:
    field: str
    action: str  # keep, generalise, city, country, pseudonymise, drop, or "norule"
    rule: str
    present: bool
    output: str  # the fields it becomes, for generalise, city and country
    generalised_from: str = ""  # the field whose generalised value the recipient gets here
    empty: bool = False  # generalised, but the value filled yields nothing (no age band)


@dataclass(frozen=True)
class Preview:
    state: str  # forward, refused, unavailable (no policy set), error (policy unusable)
    problem: str = ""  # for refused: the refusal code; for error: what is wrong
    detail: str = ""
    domain: str = ""
    version: str = ""
    key_id: str = ""
    signed_at: int = 0
    basis: str = ""
    rules: tuple[str, ...] = ()
    receive: tuple[Row, ...] = ()
    withheld: tuple[Row, ...] = ()
    text: tuple[str, ...] = ()  # the answer as the CLI prints it


def _member(m: dict | None) -> str:
    return "?" if m is None else f"{m['agencyId']} ({m['role']}, {m['jurisdiction']})"


class Previewer:
    def __init__(self, path: str, directory: DirectoryRef, agency: str, iso) -> None:
        self.path, self.directory, self.agency, self.iso = path, directory, agency, iso
        self._lock = threading.Lock()
        self._cached: tuple | None = None  # (file stamp, directory serial, policy, signer)

    def _policy(self, now: int):
        trusted = self.directory()
        path = Path(self.path)
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._cached is None or self._cached[:2] != (stamp, trusted.serial):
                domain = topology.domain_of(trusted, self.agency)
                policy, signer = read_policy(path.read_bytes(), str(path), trusted, domain, now)
                self._cached = (stamp, trusted.serial, policy, signer)
            return self._cached[2], self._cached[3]

    def preview(self, draft: dict, consent: dict | None, now: int) -> Preview:
        """What the recipient of ``draft`` (a checked referral draft) would receive now."""
        if not self.path:
            return Preview("unavailable")
        try:
            policy, signer = self._policy(now)
        except (OSError, MeshError) as exc:
            return Preview("error", problem=getattr(exc, "strerror", None) or str(exc))
        referral = records.Referral.from_dict({**draft, "referralId": "preview",
                                               "senderAgency": self.agency,
                                               "createdAt": now}).to_dict()
        trusted = self.directory()
        result = decide.explain(referral, consent, trusted, policy, now, os.urandom(32))
        text = (f"referral {referral['referralId']}: {_member(result.sender)} -> "
                f"{_member(result.recipient)}, purpose {referral['purpose']}, legal basis "
                f"{referral['legalBasis']}",
                f"policy {policy.domain} version {policy.version}, signed with "
                f"{signer.key_id} at {self.iso(signer.signed_at)}",
                *decide.render(result, policy))
        common = dict(domain=policy.domain, version=policy.version, key_id=signer.key_id,
                      signed_at=signer.signed_at, text=text)
        d = result.decision
        if isinstance(d, Deny):
            return Preview("refused", problem=d.reason, detail=d.detail or "", **common)
        rows = [Row(line.field, line.action if line.rule else "norule", line.rule or "",
                    line.present, ", ".join(line.output), line.generalised_from or "", line.empty)
                for line in result.lines]
        return Preview("forward", basis=d.basis, rules=tuple(d.rules),
                       receive=tuple(r for r in rows if r.action not in ("drop", "norule")),
                       withheld=tuple(r for r in rows if r.action in ("drop", "norule")),
                       **common)
