"""The record of access (issue 14, item 2): every view of a referral's case data, every change
and every export is recorded with who, when and what (ids, never the data); supervisors read it
on the page and admin tokens through the API; `refmesh access export` checks the chain and
writes JSON lines; a changed, removed or cut entry is found."""
from __future__ import annotations

import json
import sqlite3

import yaml
from click.testing import CliRunner

from cli import cli
from gateways import access
from refmesh import accesslog, samples
from tests.unit.webfix import HOTLINE, PASSWORD

CANARY = "CANARY-7c1e"


def log_rows(fix) -> list[dict]:
    with fix.gateway.store.read() as db:
        return access.entries(db)


def actions(fix) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["action"], r["ref"]) for r in log_rows(fix)]


def test_views_changes_and_refusals_are_recorded_with_ids_only(shelter):
    accounts = shelter.web.accounts
    accounts.add_user("worker", PASSWORD, shelter.clock(), team="legal")
    rid = shelter.arrive(1, person={**shelter_person(), "firstName": CANARY})["referralId"]
    boss = shelter.signed_in()  # amal supervises
    page = boss.get(f"/referrals/{rid}")
    assert page.status == 200 and CANARY in page.text
    boss.post(f"/referrals/{rid}/status", {"csrf": page.csrf, "state": "accepted"})
    boss.post(f"/referrals/{rid}/assign", {"csrf": page.csrf, "username": "worker"})
    other = shelter.arrive(2)["referralId"]
    worker = shelter.signed_in("worker")
    assert worker.get(f"/referrals/{other}").status == 404  # the intake team's, not theirs
    assert worker.get(f"/referrals/{rid}").status == 200
    got = actions(shelter)
    for expected in [("amal", "view", rid), ("amal", "status:accepted", rid),
                     ("amal", "assign", rid), ("worker", "view-refused", other),
                     ("worker", "view", rid), ("amal", "list", "inbox")]:
        assert expected in got, expected
    rows = log_rows(shelter)
    assert all(r["at"] == shelter.clock() for r in rows if r["action"] == "view")
    assert CANARY not in json.dumps(rows)
    assert accesslog.verify([{f: r[f] for f in accesslog.FIELDS} for r in rows])[1] is None


def shelter_person() -> dict:
    return samples.referral(n=1)["person"]


def test_supervisors_read_it_on_the_page_and_admin_tokens_through_the_api(hotline):
    hotline.arrive(1)
    boss = hotline.signed_in()
    boss.get("/inbox")
    page = boss.get("/access")
    assert page.status == 200 and "hash chain holds" in page.text and "list" in page.text
    token = hotline.web.accounts.add_token("audit", ["admin"], hotline.clock())

    async def call(path):
        async with boss.session.get(hotline.server.make_url(path),
                                    headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()
    status, body = hotline.loop.run_until_complete(call("/v1/access?after=-1&limit=1000"))
    assert status == 200 and body["intact"] is True
    assert [e["seq"] for e in body["entries"]] == list(range(len(body["entries"])))
    assert body["head"] == str(accesslog.Head(len(body["entries"]),
                                              body["entries"][-1]["hash"]))
    assert ("token:audit", "read", "access") in actions(hotline)  # reading it is recorded


def export(config, *more):
    return CliRunner().invoke(cli, ["access", "export", "--config", str(config), *more])


def test_export_verifies_writes_json_lines_and_records_itself(hotline, tmp_path):
    rid = hotline.arrive(1)["referralId"]
    hotline.signed_in().get(f"/referrals/{rid}")
    config = tmp_path / "gateway.yaml"
    doc = yaml.safe_load(hotline.files.gateway_config(HOTLINE).read_text())
    config.write_text(yaml.safe_dump({**doc, "database": hotline.settings.database}))
    out = tmp_path / "access.jsonl"
    done = export(config, "--out", str(out))
    assert done.exit_code == 0, done.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[-1]["action"] == "export" and lines[-1]["actor"].startswith("cli:")
    assert any(x["action"] == "view" and x["ref"] == rid for x in lines)
    head = done.output.split("head ")[1].split()[0]
    assert accesslog.Head.parse(head).seq == len(lines)

    # a later export passes through that head; a cut tail does not
    assert export(config, "--since", head, "--out", str(out)).exit_code == 0
    db = sqlite3.connect(hotline.settings.database)
    last = db.execute("SELECT max(seq) FROM access_log").fetchone()[0]
    db.execute("DELETE FROM access_log WHERE seq >= ?", (last - 1,))
    db.commit()
    cut = export(config, "--since", head, "--out", str(out))
    assert cut.exit_code == 1 and "cut or rewritten" in cut.output


def tampered(hotline, tmp_path, change: str) -> str:
    for n in range(1, 4):
        hotline.arrive(n)
    c = hotline.signed_in()
    c.get("/inbox")
    c.get("/outbox")
    db = sqlite3.connect(hotline.settings.database)
    db.execute(change)
    db.commit()
    db.close()
    config = tmp_path / "gateway.yaml"
    doc = yaml.safe_load(hotline.files.gateway_config(HOTLINE).read_text())
    config.write_text(yaml.safe_dump({**doc, "database": hotline.settings.database}))
    done = export(config, "--out", str(tmp_path / "out.jsonl"))
    assert done.exit_code == 1
    page = c.get("/access")
    assert "hash chain is broken" in page.text
    return done.output


def test_a_changed_entry_is_found(hotline, tmp_path):
    said = tampered(hotline, tmp_path, "UPDATE access_log SET actor = 'someone' WHERE seq = 1")
    assert "entry seq 1" in said and "changed" in said


def test_a_changed_entry_with_its_hash_recomputed_is_found(hotline, tmp_path):
    # whoever rewrites an entry and its own hash still breaks the next entry's link
    def forged_hash(db_path):
        db = sqlite3.connect(db_path)
        row = dict(zip(accesslog.FIELDS, db.execute(
            f"SELECT {', '.join(accesslog.FIELDS)} FROM access_log WHERE seq = 1").fetchone()))
        return accesslog.digest({**row, "actor": "someone"})
    for n in range(1, 3):
        hotline.arrive(n)
    hotline.signed_in().get("/inbox")
    new = forged_hash(hotline.settings.database)
    said = tampered(hotline, tmp_path, f"UPDATE access_log SET actor = 'someone', hash = "
                                       f"'{new}' WHERE seq = 1")
    assert "entry seq 2" in said


def test_a_removed_entry_is_found(hotline, tmp_path):
    said = tampered(hotline, tmp_path, "DELETE FROM access_log WHERE seq = 1")
    assert "entry seq 2" in said and "missing" in said
