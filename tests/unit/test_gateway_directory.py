"""A gateway and a domain's agents under the signed directory (issue 12, item 8), without a
broker: an expired edition makes /healthz answer 503 naming it and the API refuse new referrals
and consents (503), until a newer edition is placed (no restart); an edition older than the
highest serial seen stops the start with one error line."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kafkaedge.loading import keystore_path, load_anchor, now_ms, write_file
from refmesh import directory, keys, samples
from tests.unit.webfix import HOTLINE, SHELTER, mesh_files, open_web  # noqa: F401 (fixture)

DAY = 86_400_000


def edition(files, serial: int, issued: int, valid_days: int = 90) -> bytes:
    """An edition of the sample mesh's directory with ``serial``, signed by its coordinator."""
    anchor = load_anchor(files.anchor)
    coordinator = keys.unlock(keystore_path(files.keystore, anchor.agency_id).read_bytes(),
                              files.env["REFMESH_PASSPHRASE"])
    body = directory.verify(files.directory.read_bytes(), anchor).body
    return directory.sign({**body, "serial": serial - 1}, coordinator, issued, valid_days)


def api(fix, method: str, path: str, body: dict | None = None):
    """(status, JSON) of an API call with the agency's token."""
    token = fix.files.token(fix.agency)

    async def call():
        async with fix.clients[0].session.request(
                method, fix.server.make_url(path), json=body,
                headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()

    if not fix.clients:
        fix.client()
    return fix.loop.run_until_complete(call())


@pytest.fixture
def hotline(mesh_files, tmp_path, monkeypatch):  # noqa: F811 (mesh_files is the fixture)
    """The hotline's gateway on its own copy of the directory file."""
    copy = tmp_path / "directory.bin"
    shutil.copyfile(mesh_files.directory, copy)
    fix = open_web(mesh_files, HOTLINE, tmp_path, monkeypatch, directory=str(copy))
    fix.gateway.directory.recheck_s = 0  # the test places files: read them at once
    fix.copy = copy
    yield fix
    fix.close()


def directory_problems(fix) -> list[str]:
    status, body = api(fix, "GET", "/healthz")
    assert status == 503  # never started here: its threads do not run
    return [p for p in body["problems"] if "directory" in p]


def test_an_expired_directory_stops_new_referrals_and_consents_until_a_newer_edition(
        hotline, mesh_files):  # noqa: F811
    consent = samples.consent(1, controller=hotline.agency, valid_from=now_ms() - 1000)
    assert api(hotline, "POST", "/v1/consents", consent)[0] == 202
    assert directory_problems(hotline) == []
    now = now_ms()
    write_file(hotline.copy, edition(mesh_files, 2, now - 2 * DAY, valid_days=1), mode=0o644)
    (problem,) = directory_problems(hotline)
    assert problem.startswith("signed directory serial 2 expired at ")
    assert "refmesh directory sign" in problem and str(hotline.copy) in problem
    referral = samples.referral(f"dir-{now}", sender=hotline.agency, recipient=SHELTER, n=1)
    status, body = api(hotline, "POST", "/v1/referrals", referral)
    assert status == 503
    assert body["error"].startswith("new referrals and consents are refused: signed directory "
                                    "serial 2 expired") and "nothing was accepted" in body["error"]
    assert api(hotline, "POST", "/v1/consents", {**consent, "consentId": "c-new"})[0] == 503
    assert api(hotline, "GET", "/v1/outbox")[1]["referrals"] == []
    # the person's withdrawal is kept: it waits in the outbox for the next edition
    assert api(hotline, "POST", f"/v1/consents/{consent['consentId']}/withdraw", {})[0] == 202
    write_file(hotline.copy, edition(mesh_files, 3, now), mode=0o644)
    assert directory_problems(hotline) == []
    assert api(hotline, "POST", "/v1/referrals", referral)[0] == 202


def test_a_gateway_does_not_start_on_an_edition_older_than_it_has_seen(
        mesh_files, tmp_path, monkeypatch, capsys):  # noqa: F811
    from gateways import run

    for name, value in mesh_files.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(run, "configure_logging", lambda: None)
    config = yaml.safe_load(mesh_files.gateway_config(HOTLINE).read_text())
    config["database"] = str(tmp_path / "hotline.db")
    (tmp_path / "hotline.db.directory-serial").write_text("2\n")  # it ran on serial 2 before
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run.main(["--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: directory file {mesh_files.directory}: directory serial 1 "
                           "is older than serial 2 already seen; refusing a rollback")
    assert not Path(config["database"]).exists()  # refused before anything was opened


def test_a_domains_agents_do_not_start_on_an_edition_older_than_they_have_seen(
        mesh_files, tmp_path, monkeypatch, capsys):  # noqa: F811
    from agents import run

    for name, value in mesh_files.env.items():
        monkeypatch.setenv(name, value)
    domain = load_anchor(mesh_files.anchor).agency_id  # the coordinator is a policy domain
    config = yaml.safe_load(mesh_files.agents_config(domain).read_text())
    config.update(data_dir=str(tmp_path / "agents"), web_port=0)
    (tmp_path / "agents" / "1").mkdir(parents=True)
    (tmp_path / "agents" / "1" / "directory-serial").write_text("2\n")
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run.main(["--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("refmesh agents: directory file ")
    assert "directory serial 1 is older than serial 2 already seen" in line
