"""Consent evaluation: may this referral go to this recipient at all?

``check`` answers None (yes) or a ``Deny`` with a stable reason. It looks at the legal basis, then
at the consent record the referral names: the same consent and person, the version named, not
withdrawn, valid now, and permitting this purpose, this recipient (by agency or by role) and,
across a border, the recipient's country. Which fields may go (the consent's data categories) is
decided by minimisation (``refmesh.minimise.plan``). A referral relies only on a consent that
its own sender recorded: the consent's controller (docs/security-model.md).

``change_problem`` says whether a consent may replace the one the domain holds: consents belong
to their controller, their version never goes backwards and their history is append-only, so an
old copy (a withdrawn consent before its withdrawal) can never come back.

A legal basis other than Consent (a legal obligation to report to the police, the person's
vital interest) needs no consent record, but only where the domain policy allows that basis for
the recipient's role; the decision then names the basis it relied on (``decide.Allow.basis``).
"""
from __future__ import annotations

from refmesh.decisions import Deny
from refmesh.policy import Policy


def withdrawn_at(consent: dict) -> int | None:
    """When the consent was withdrawn (its earliest Withdrawn event), or None. A consent whose
    history contains a withdrawal permits nothing from that moment on."""
    times = [e["at"] for e in consent.get("events", ()) if e["type"] == "Withdrawn"]
    return min(times) if times else None


def check(referral: dict, consent: dict | None, recipient: dict, sender: dict, policy: Policy,
          now: int) -> Deny | None:
    """None when the referral may go to ``recipient`` (a directory Member dict) from ``sender``
    (Member) under ``consent`` (a Consent dict, or None when the domain holds none for the
    subject) at ``now``; else the Deny saying why."""
    basis, role = referral["legalBasis"], recipient["role"]
    if basis != "Consent":
        if policy.allows_basis(basis, role):
            return None
        allowed = sorted(r for r in policy.legal_bases.get(basis, ()))
        return Deny("legal_basis_not_allowed",
                    f"policy {policy.version} does not allow {basis} for {role}"
                    + (f" (only for {', '.join(allowed)})" if allowed else "")
                    + "; rely on the person's consent instead")
    if referral.get("consentId") is None:
        return Deny("consent_missing", "the referral relies on consent but names no consentId")
    if consent is None:
        return Deny("consent_missing", "the policy domain holds no consent for this person; "
                                       "record the consent first")
    if consent["controller"] != referral["senderAgency"]:
        return Deny("consent_not_controller", "a referral relies only on a consent its sender "
                                              "recorded (the consent's controller); record the "
                                              "person's consent at the sending agency")
    if consent["consentId"] != referral["consentId"] or \
            consent["subjectId"] != referral["subjectId"]:
        return Deny("consent_mismatch", "the consent held for this person is not the one the "
                                        "referral names (consentId or subjectId differ)")
    if referral.get("consentVersion") != consent["version"]:
        return Deny("consent_version", f"the referral names consent version "
                                       f"{referral.get('consentVersion')}, the current version "
                                       f"is {consent['version']}; update the referral")
    withdrawn = withdrawn_at(consent)
    if withdrawn is not None and withdrawn <= now:
        return Deny("consent_withdrawn", f"consent withdrawn at {withdrawn} (epoch ms)")
    if now < consent["validFrom"]:
        return Deny("consent_not_yet_valid", f"consent valid from {consent['validFrom']} "
                                             "(epoch ms)")
    if consent["validUntil"] is not None and now >= consent["validUntil"]:
        return Deny("consent_expired", f"consent expired at {consent['validUntil']} (epoch ms)")
    if referral["purpose"] not in consent["purposes"]:
        return Deny("purpose_not_consented", f"the consent does not cover the purpose "
                                             f"{referral['purpose']}")
    if recipient["agencyId"] not in consent["recipientAgencies"] and \
            role not in consent["recipientRoles"]:
        return Deny("recipient_not_consented", f"the consent covers neither "
                                               f"{recipient['agencyId']} nor the role {role}")
    origin, destination = sender["jurisdiction"], recipient["jurisdiction"]
    if destination != origin and not (
            consent["crossBorder"] and destination in consent["crossBorderCountries"]):
        return Deny("cross_border_not_consented",
                    f"the consent does not allow transfer from {origin} to {destination}")
    return None


def change_problem(held: dict | None, incoming: dict) -> str | None:
    """Why ``incoming`` may not replace ``held``, the consent the domain holds under the same
    controller, consent id and person (None: nothing held yet); None when it may.

    - ``consent_controller_changed``: the controller differs (the domain's table key holds the
      controller, so this is a second line of defence);
    - ``consent_version_older``: a lower version than the one held;
    - ``consent_not_newer``: the same version, but not the held consent with events appended
      (a withdrawal appends an event and keeps the version); the identical consent again
      under a new event id is refused too (a re-send keeps its event id: ``refmesh.replay``);
    - ``consent_history_rewritten``: a newer version whose history does not start with the
      held one's (an event dropped or changed: a withdrawal would disappear).
    """
    if held is None:
        return None
    if incoming["controller"] != held["controller"]:
        return "consent_controller_changed"
    if incoming["version"] < held["version"]:
        return "consent_version_older"
    events, held_events = incoming["events"], held["events"]
    if events[:len(held_events)] != held_events:
        return "consent_history_rewritten" if incoming["version"] > held["version"] else \
            "consent_not_newer"
    if incoming["version"] == held["version"] and (
            len(events) == len(held_events)
            or {k: v for k, v in incoming.items() if k != "events"}
            != {k: v for k, v in held.items() if k != "events"}):
        return "consent_not_newer"
    return None
