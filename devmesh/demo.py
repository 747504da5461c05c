"""``make demo``: the sample mesh of DOMAIN.md on the embedded broker, end to end
(``make demo BROKER=apache``: on Apache Kafka 4, SASL_SSL with SCRAM-SHA-512 and ACLs on).

Starts the broker, writes the sample mesh (keys, signed directory, signed policies) to a
temporary folder, starts both policy domains' agents and six gateways, records consents, sends
synthetic referrals along the typical case path (one refused for want of consent, one minimised
across the border), shows the closed loop, withdraws a consent and follows the erasure, checks
the audit chains, scans every byte on every topic for the planted personal values, stops
everything and exits 0 (1 if anything went wrong). All data is synthetic.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from gateways import aggregates_report
from kafkaedge import profiles
from gateways.aggregates_reader import read_all
from kafkaedge.audit_reader import read_chains
from devmesh import brokers
from devmesh.brokers import LocalBroker
from kafkaedge.acls import apply_acls
from gateways.client import GatewayError
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import SAMPLE, build
from gateways.scan import scan
from devmesh.supervise import wait_until
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import audit, codec, samples, topology
from refmesh.aggregate import table
from refmesh.access import mesh_grants, region_principal
from refmesh.errors import MeshError

HOTLINE, POLICE, SHELTER = "BH/GOV/HOTLINE", "BH/GOV/MOI-ATU", "BH/GOV/SHELTER"
PSYCH, IOM, RECEPTION = "BH/NGO/PSYCH", "BH/IO/IOM", "ET/NGO/RECEPTION"
DOMAINS = ("BH/GOV/NCCTIP", "ET/GOV/NCC")
START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


REGION = "GCC"
REPORT = Path(__file__).resolve().parent.parent / "demo-out" / "report.html"


def with_region(config: Path) -> None:
    """Let Bahrain's domain publish statistics to region GCC, by the minute for the demo: a
    window is due as it closes and final three minutes later, with a correction every 10 s in
    between (so that the demo need not wait for the final one)."""
    cfg = yaml.safe_load(config.read_text())
    cfg.update(region=REGION, aggregate_unit="minute", aggregate_grace_ms=0,
               aggregate_max_late_ms=180_000, aggregate_revisions=18, release_interval_s=1)
    config.write_text(yaml.safe_dump(cfg))


def statistics(mesh: RunningMesh, files, broker: LocalBroker) -> None:
    """Twenty-five more synthetic referrals from last minute, then the region's release.

    The window is due at once, so the release job may publish it while referrals are still
    arriving; its corrections, each recounted, follow every 10 s on that schedule whatever
    arrived, until the window is final (three minutes after it closed:
    ``aggregate_max_late_ms``). The demo shows the first revision with a cell released."""
    past = now_ms() - 2 * 60_000
    for n in range(100, 125):
        consent = samples.consent(n, controller=HOTLINE, valid_from=past - 60_000)
        consent["recipientRoles"] = ["CentralGovernmentOrganisation"]
        mesh.client(HOTLINE).record_consent(consent)
        mesh.client(HOTLINE).submit(samples.referral(
            referral_id=f"stats-{n}-{past}", sender=HOTLINE, recipient=SHELTER,
            created_at=past, n=n))
    say("25 more referrals (last minute's window) sent for the statistics")
    # read as the regional body, with the rights of its principal only
    config = profiles.consumer_config(broker.profile, broker.bootstrap, "stats",
                                      broker.security_for(region_principal(REGION)))
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()

    def released():
        messages = read_all(config, REGION) or []
        kept, _ = table.accept(((f"{m.partition}@{m.offset}", m.value) for m in messages),
                               trusted, now_ms(), REGION, table.Latest())
        latest = {(r["domain"], r["windowStart"]): r for r in kept}  # newest revision each
        shown = [r for r in latest.values() if any(c["count"] for c in r["cells"])]
        return shown

    releases = wait_until(released, 150, "a statistics release for region GCC")
    say(f"region {REGION} received {len(releases)} signed release(s); released cells "
        "(k = 11, rounded down to 5; null = all values):")
    skip = {"count", "domain", "region", "windowStart", "windowEnd", "revision", "k",
            "resolution", "epsilon", "period", "yearOfRegistration", "monthOfRegistration",
            *table.CLAIM}
    for row in table.rows(releases):
        dims = ", ".join(f"{k} {v}" for k, v in row.items() if k not in skip and v is not None)
        print(f"    {row['count']:5}  {dims}")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(aggregates_report.render(releases, region=REGION,
                                               generated_at=now_ms(), rejected=[]))
    say(f"regional report written to {REPORT}")


def case_path(now: int) -> list[tuple[str, dict, str]]:
    """(sender, referral, what the recipient's case worker does) along DOMAIN.md's typical case."""
    count = iter(range(1, 100))

    def referral(n, sender, recipient, stage, purpose, services):
        r = samples.referral(referral_id=f"demo-{next(count)}-{now}", sender=sender,
                             recipient=recipient, created_at=now, n=n)
        r["trmStage"], r["purpose"] = stage, purpose
        r["service"] = {**r["service"], "services": services}
        return r

    return [
        # person 3 never gave consent: the policy domain refuses, the hotline learns why
        (HOTLINE, referral(3, HOTLINE, SHELTER, "FirstAssistance", "Services", ["Shelter"]),
         "refused"),
        (HOTLINE, referral(1, HOTLINE, SHELTER, "FirstAssistance", "Services",
                           ["Shelter", "Interpreter"]), "completed"),
        (HOTLINE, referral(1, HOTLINE, POLICE, "Proceedings", "Prosecution",
                           ["Investigation"]), "in_progress"),
        (SHELTER, referral(1, SHELTER, PSYCH, "FirstAssistance", "Services",
                           ["PsychologicalSupport"]), "accepted"),
        (HOTLINE, referral(2, HOTLINE, SHELTER, "FirstAssistance", "Services",
                           ["Shelter"]), "rejected"),
        (IOM, referral(1, IOM, RECEPTION, "ReturnAndInclusion", "Return",
                       ["Reception", "Reintegration"]), "accepted"),
    ]


def consents(now: int) -> list[tuple[str, dict]]:
    """(recording agency, consent): person 1 agreed to services, prosecution and return, in
    Bahrain and to Ethiopia, at the hotline, again at the shelter and at IOM (a referral relies
    only on a consent its own sender recorded); person 2 only to services at a shelter; person 3
    to nothing."""
    def everything(controller: str) -> dict:
        consent = samples.consent(1, controller=controller, valid_from=now - 60_000)
        consent.update(
            purposes=["Services", "Referral", "Prosecution", "Return"],
            recipientRoles=["CentralGovernmentOrganisation", "LawEnforcement",
                            "HealthServiceOrganisation", "IntergovernmentalOrganisation", "NGO"],
            dataCategories=["Identity", "Contact", "Demographics", "VictimContext",
                            "SupportNeeds", "Health", "ReferralDetails"],
            crossBorder=True, crossBorderCountries=["ET"])
        return consent

    shelter_only = samples.consent(2, controller=HOTLINE, valid_from=now - 60_000)
    shelter_only.update(recipientRoles=["CentralGovernmentOrganisation"],
                        dataCategories=["Identity", "Demographics", "SupportNeeds"])
    return [(HOTLINE, everything(HOTLINE)), (HOTLINE, shelter_only),
            (SHELTER, everything(SHELTER)), (IOM, everything(IOM))]


def leaves(record: dict, prefix: str = "") -> set[str]:
    """Dotted names of the fields that carry a value."""
    out = set()
    for name, value in record.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{name}.")
        elif value not in (None, "", []):
            out.add(prefix + name)
    return out


def canaries(referrals: list[dict]) -> list[str]:
    """The planted personal values: every free-text or identifying value of every referral."""
    out = set()
    for r in referrals:
        p, v, n = r["person"], r["victim"], r["needs"]
        out |= {f"{p['firstName']} {p['secondName']}", p["identityNumber"], p["mobilePhone"],
                p["email"], p["mailingStreet"], p["birthdate"], r["service"]["details"],
                v["caseComment"], n["medicalNotes"], n["objectives"], r["caseRef"]}
    return sorted(x for x in out if x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devmesh.demo")
    parser.add_argument("--broker", choices=brokers.KINDS, default="embedded")
    kind = parser.parse_args(argv).broker
    work = Path(tempfile.mkdtemp(prefix="refmesh-demo-"))
    broker = None
    mesh = None
    code = 1
    try:
        broker = brokers.start(kind, work / "broker")
        bootstrap = broker.bootstrap
        say(f"broker at {bootstrap}: {brokers.describe(broker)}")
        files = build(work / "mesh", bootstrap, now_ms(), resend_after_ms=3000, broker=kind,
                      credentials=broker.credentials)
        say(f"sample mesh written: {len(SAMPLE)} agencies in 2 jurisdictions, directory signed "
            f"by {DOMAINS[0]}")
        with_region(files.agents_config(DOMAINS[0]))
        trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
        specs = [TopicSpec(name, 4, compacted) for name, compacted in
                 topology.mesh_topics(trusted, [REGION])]
        ensure_topics(broker.admin_config(), specs)
        say(f"{len(specs)} topics created with explicit partition counts")
        if broker.secured:
            grants = mesh_grants(trusted, {DOMAINS[0]: REGION})
            apply_acls(broker.admin_config(), grants)
            say(f"{len(grants)} ACLs from the signed directory: each gateway, domain and the "
                f"regional reader has its own SCRAM user and only the rights of its role")
        mesh = RunningMesh(files, work / "logs")  # stopped in finally, even if a start fails
        for domain in DOMAINS:
            mesh.start_agents(domain)
        gateways = (HOTLINE, POLICE, SHELTER, PSYCH, IOM, RECEPTION)
        for agency in gateways:
            mesh.start_gateway(agency, wait=False)
        for agency in gateways:
            mesh.wait_healthy(agency)
        for domain in DOMAINS:
            mesh.wait_agents_ready(domain)
        say(f"policy-domain agents of {', '.join(DOMAINS)} and {len(gateways)} gateways running")
        code = run_case_path(mesh, broker)
    except MeshError as exc:
        say(f"demo failed: {exc}")
        code = 1
    finally:
        if mesh is not None:
            mesh.stop()
            say("gateways and agents stopped")
        if broker is not None:
            broker.stop()
    if code == 0:
        shutil.rmtree(work, ignore_errors=True)
        say("broker stopped; temporary files removed")
    else:
        say(f"broker stopped; logs kept in {work / 'logs'}")
    return code


def run_case_path(mesh: RunningMesh, broker: LocalBroker) -> int:
    now = now_ms()
    for agency, consent in consents(now):
        mesh.client(agency).record_consent(consent)
        say(f"{agency} records consent {consent['consentId']} of person {consent['subjectId']}: "
            f"purposes {', '.join(consent['purposes'])}")
    path = case_path(now)
    for sender, referral, _ in path:
        mesh.client(sender).submit(referral)
        say(f"{sender} -> {referral['recipientAgency']}: referral {referral['referralId']} "
            f"({referral['trmStage']}, purpose {referral['purpose']}) submitted")
    for sender, referral, outcome in path:
        rid, recipient = referral["referralId"], referral["recipientAgency"]
        wait_until(lambda: mesh.client(sender).show(rid)["state"] != "requested", 60,
                   f"an answer for {rid}")
        shown = mesh.client(sender).show(rid)
        if outcome == "refused":
            assert shown["state"] == "refused", shown["state"]
            detail = shown["history"][-1]["detail"]
            say(f"{sender} sees {rid}: REFUSED by its policy domain ({detail}); nothing sent")
            continue
        got = mesh.client(recipient).show(rid)["record"]
        say(f"{sender} sees {rid}: received by {recipient}, which got "
            f"{len(leaves(got))} of the {len(leaves(referral))} fields sent")
    cross = next(r for _, r, _ in path if r["recipientAgency"] == RECEPTION)
    got = mesh.client(RECEPTION).show(cross["referralId"])["record"]
    say(f"cross-border referral as {RECEPTION} holds it (policy rules reception-return + "
        f"bh-to-et-return): {', '.join(sorted(leaves(got['person'], 'person.')))}")
    for sender, referral, outcome in path:
        rid, recipient = referral["referralId"], referral["recipientAgency"]
        steps = {"completed": ["accepted", "in_progress", "completed"],
                 "in_progress": ["accepted", "in_progress"], "accepted": ["accepted"],
                 "rejected": ["rejected"], "refused": []}[outcome]
        for state in steps:
            reason = "LackOfCapacity" if state == "rejected" else None
            mesh.client(recipient).set_status(rid, state, reason)
            wait_until(lambda: mesh.client(sender).show(rid)["state"] == state, 60,
                       f"{sender} to see {rid} {state}")
            say(f"  {recipient} set {rid} to {state}" + (f" ({reason})" if reason else "")
                + f"; {sender} sees it")
    withdraw(mesh, path)
    statistics(mesh, mesh.files, broker)
    print()
    say("what each agency holds:")
    for agency in mesh.gateways:
        inbox = mesh.client(agency).inbox()
        stats = sum(r["referral_id"].startswith("stats-") for r in inbox)
        listed = ", ".join(f"{r['referral_id']} from {r['peer']} [{r['state']}]" for r in inbox
                           if not r["referral_id"].startswith("stats-"))
        extra = f" (+{stats} for the statistics)" if stats else ""
        print(f"    {agency:18} {len(inbox) - stats} referral(s){extra}"
              f"{': ' + listed if listed else ''}")
    ok = verify_audit(broker)
    planted = canaries([r for _, r, _ in path])
    result = scan(broker.consumer_config("scan"), planted,
                  topic_prefix=topology.PREFIX)
    say(f"leak scan: {result.messages} messages ({result.bytes:,} bytes) on {result.topics} "
        f"topics searched for {len(planted)} planted personal values: {len(result.hits)} found")
    for hit in result.hits:
        print(f"    LEAK: {hit[3]!r} in {hit[0]}/{hit[1]}@{hit[2]}")
    ok = ok and not result.hits
    say("demo finished: " + ("every referral answered, closed loop complete, consent and "
                              "erasure honoured, nothing readable on the broker" if ok
                              else "PROBLEMS FOUND"))
    return 0 if ok else 1


def withdraw(mesh: RunningMesh, path) -> None:
    """Person 2 withdraws consent: the shelter erases what it received, the hotline sees it."""
    rid = next(r["referralId"] for _, r, _ in path if r["subjectId"] == "subj-000002")
    consent_id = "consent-000002"
    mesh.client(HOTLINE).withdraw_consent(consent_id)
    say(f"person subj-000002 withdraws consent {consent_id} at {HOTLINE}")
    wait_until(lambda: any(e["kind"] == "Confirmation" for e in mesh.client(HOTLINE).erasures()),
               60, "the erasure confirmation")
    erased = [e for e in mesh.client(SHELTER).erasures() if e["kind"] == "Request"]
    say(f"  {SHELTER} received an erasure request for {', '.join(erased[0]['referral_ids'])} "
        f"and erased it; {HOTLINE} sees the confirmation")
    try:
        mesh.client(SHELTER).show(rid)
        raise MeshError(f"{rid} is still held by {SHELTER} after the erasure")
    except GatewayError as exc:
        if exc.status != 404:
            raise


def verify_audit(broker: LocalBroker) -> bool:
    ok = True
    for domain in DOMAINS:
        chains = read_chains(broker.consumer_config("audit"), domain)
        broken = [p for p, chain in chains.items() if audit.verify(chain) is not None]
        count = sum(map(len, chains.values()))
        decisions = Counter(codec.decode(r)[1]["decision"] for c in chains.values() for r in c)
        say(f"audit of {domain}: {count} records in {len(chains)} hash chains, "
            + ("all intact" if not broken else f"BROKEN in {broken}") + "; "
            + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))
        ok = ok and not broken
    return ok


if __name__ == "__main__":
    sys.exit(main())
