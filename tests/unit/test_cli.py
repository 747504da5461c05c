"""The refmesh CLI on files in tmp_path: the worked example, revocation, keystore files, and one
clear ``error:`` line (never a traceback) for every kind of bad input."""
from __future__ import annotations

import json
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli import cli, common
from refmesh import envelope, keys, samples
from refmesh.records import Member

PASS = "correct horse battery staple"
COORD, HOTLINE, SHELTER = "BH/GOV/MOFA", "BH/NGO/HOTLINE", "BH/NGO/SHELTER"
AGENCIES = {
    COORD: ("National Committee to Combat Trafficking", "CentralGovernmentOrganisation"),
    HOTLINE: ("Trafficking Hotline", "NGO"),
    SHELTER: ("Workers Shelter", "NGO"),
}
DAY_MS = 86_400_000


@pytest.fixture
def fast_kdf(monkeypatch):
    """scrypt at N=2**10 instead of 2**15: the same code path, a hundredth of the time."""
    monkeypatch.setattr(keys, "SCRYPT_N", 2**10)


@pytest.fixture
def runner() -> CliRunner:
    # The developer's own REFMESH_* settings must not reach the commands under test.
    return CliRunner(env={"REFMESH_PASSPHRASE": PASS, "REFMESH_KEYSTORE": None,
                          "REFMESH_DIRECTORY": None, "REFMESH_ANCHOR": None})


def run(runner: CliRunner, *args, **kwargs) -> Result:
    result = runner.invoke(cli, [str(a) for a in args], **kwargs)
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr
    return result


def fails(runner: CliRunner, code: int, *args, **kwargs) -> str:
    """Run a command that must fail; return its single error line."""
    result = runner.invoke(cli, [str(a) for a in args], **kwargs)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info  # no escaped exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def init_agency(runner: CliRunner, keystore: Path, agency_id: str, *extra) -> None:
    name, role = AGENCIES[agency_id]
    run(runner, "agency", "init", agency_id, "--name", name, "--role", role, "--country", "BH",
        "--keystore", keystore, *extra)


def member_file(keystore: Path, agency_id: str) -> dict:
    return json.loads((keystore / f"{common.file_safe(agency_id)}.member.json").read_text())


def signing_key_id(keystore: Path, agency_id: str) -> str:
    return next(k["keyId"] for k in member_file(keystore, agency_id)["keys"]
                if k["kind"] == "Ed25519")


@dataclass
class Mesh:
    root: Path
    keystore: Path
    draft: Path
    directory: Path
    anchor: Path

    def opts(self) -> list:
        return ["--keystore", self.keystore, "--directory", self.directory,
                "--anchor", self.anchor]

    def write_json(self, name: str, doc) -> Path:
        path = self.root / name
        path.write_text(json.dumps(doc, indent=2))
        return path

    def seal(self, record_file: Path, out: Path, *, to: str = SHELTER, kind: str = "referral",
             sender: str = HOTLINE) -> list:
        return ["seal", "--from", sender, "--to", to, "--type", kind, record_file, *self.opts(),
                "--out", out]


@pytest.fixture
def mesh(tmp_path: Path, runner: CliRunner, fast_kdf) -> Mesh:
    """A coordinator and two agencies, in a directory signed once (serial 1)."""
    m = Mesh(tmp_path, tmp_path / "keys", tmp_path / "draft.json", tmp_path / "directory.bin",
             tmp_path / "anchor.json")
    for agency_id in AGENCIES:
        init_agency(runner, m.keystore, agency_id)
    run(runner, "directory", "init", "--coordinator", COORD, "--out", m.draft)
    run(runner, "directory", "add", m.draft, *sorted(m.keystore.glob("*.member.json")))
    run(runner, "directory", "sign", m.draft, "--keystore", m.keystore, "--out", m.directory)
    return m


def test_worked_example(tmp_path: Path, runner: CliRunner, fast_kdf) -> None:
    ks = tmp_path / "keys"
    for agency_id in AGENCIES:
        init_agency(runner, ks, agency_id)
    shelter = member_file(ks, SHELTER)
    assert Member.from_json(shelter).agencyId == SHELTER
    assert (shelter["name"], shelter["role"], shelter["jurisdiction"]) == (
        "Workers Shelter", "NGO", "BH")
    assert {k["kind"] for k in shelter["keys"]} == {"Ed25519", "MLKEM768X25519", "X25519"}

    draft, signed = tmp_path / "draft.json", tmp_path / "pub" / "directory.bin"
    signed.parent.mkdir()
    out = run(runner, "directory", "init", "--coordinator", COORD, "--out", draft).output
    assert json.loads(draft.read_text())["coordinator"] == COORD and "no members" in out
    out = run(runner, "directory", "add", draft, *sorted(ks.glob("*.member.json"))).output
    assert "3 members" in out
    out = run(runner, "directory", "sign", draft, "--keystore", ks, "--out", signed).output
    assert "serial 1, 3 members" in out
    anchor = signed.parent / "anchor.json"  # the default: next to --out
    assert json.loads(anchor.read_text())["keyId"] == signing_key_id(ks, COORD)
    assert json.loads(draft.read_text())["serial"] == 1  # so the next signature is serial 2

    out = run(runner, "directory", "verify", signed, "--anchor", anchor).output
    assert re.fullmatch(r"ok: serial 1, 3 members, expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n",
                        out)
    shown = run(runner, "directory", "show", signed, "--anchor", anchor).output
    for agency_id, (name, role) in AGENCIES.items():
        assert f"{agency_id}  {name}  role {role}  jurisdiction BH" in shown
        for key in member_file(ks, agency_id)["keys"]:
            assert re.search(rf"{key['keyId']} +{key['kind']} +active", shown)
    whole = json.loads(run(runner, "directory", "show", signed, "--anchor", anchor,
                           "--json").output)
    assert whole["serial"] == 1
    assert [m["keys"] for m in whole["members"] if m["agencyId"] == SHELTER] == [shelter["keys"]]

    # Gateways name the keystore, directory and anchor once, in the environment.
    env = {"REFMESH_KEYSTORE": str(ks), "REFMESH_DIRECTORY": str(signed),
           "REFMESH_ANCHOR": str(anchor)}
    referral = tmp_path / "referral.json"
    referral.write_text(json.dumps(samples.referral(), indent=2))
    event = run(runner, "seal", "--from", HOTLINE, "--to", SHELTER, "--type", "referral",
                referral, env=env).stdout_bytes
    assert event[:2] == b"\xc3\x01" and b"Amina" not in event
    (tmp_path / "event.bin").write_bytes(event)

    opened = json.loads(run(runner, "open", "--as", SHELTER, tmp_path / "event.bin",
                            env=env).output)
    assert opened["type"] == "Referral"
    assert opened["record"] == samples.referral()
    header = opened["header"]
    assert (header["sender"], header["recipient"], header["suite"]) == (
        HOTLINE, SHELTER, envelope.HYBRID)
    assert header["senderKeyId"] == signing_key_id(ks, HOTLINE)
    assert re.fullmatch(r"[0-9a-f]{16}", header["schemaFingerprint"])

    line = fails(runner, 1, "open", "--as", COORD, tmp_path / "event.bin", env=env)
    assert line == "error: envelope rejected (wrong_recipient)"


def _x25519_only(mesh: Mesh, runner: CliRunner, agency_id: str) -> None:
    """Mark ``agency_id`` X25519-only: revoke its ML-KEM key and sign the next edition."""
    key_id = next(k["keyId"] for k in member_file(mesh.keystore, agency_id)["keys"]
                  if k["kind"] == "MLKEM768X25519")
    run(runner, "directory", "revoke-key", mesh.draft, "--agency", agency_id, "--key", key_id)
    run(runner, "directory", "sign", mesh.draft, "--keystore", mesh.keystore, "--out",
        mesh.directory)


def test_x25519_for_a_hybrid_recipient_is_refused(mesh: Mesh, runner: CliRunner) -> None:
    status = mesh.write_json("status.json", samples.status())
    line = fails(runner, 2, *mesh.seal(status, mesh.root / "s.bin", kind="status",
                                       sender=SHELTER, to=HOTLINE), "--suite", "x25519")
    assert line.startswith(f"error: --suite x25519: {HOTLINE} publishes a hybrid ML-KEM key")
    assert not (mesh.root / "s.bin").exists()


def test_status_with_classic_suite_from_stdin(mesh: Mesh, runner: CliRunner) -> None:
    _x25519_only(mesh, runner, HOTLINE)
    status = mesh.write_json("status.json", samples.status())
    # the directory's choice for an X25519-only recipient, and the same asked for by name
    result = run(runner, *mesh.seal(status, mesh.root / "auto.bin", kind="status",
                                    sender=SHELTER, to=HOTLINE))
    assert envelope.read_header((mesh.root / "auto.bin").read_bytes())["suite"] == \
        envelope.CLASSIC
    result = run(runner, *mesh.seal(status, mesh.root / "s.bin", kind="status", sender=SHELTER,
                                    to=HOTLINE), "--suite", "x25519")
    assert result.stdout == ""
    assert result.stderr.startswith("sealed ReferralStatus event ")
    opened = json.loads(run(runner, "open", "--as", HOTLINE, "-", *mesh.opts(),
                            input=(mesh.root / "s.bin").read_bytes()).output)
    assert opened["header"]["suite"] == envelope.CLASSIC
    assert opened["record"] == samples.status()


def test_each_signature_increases_the_serial(mesh: Mesh, runner: CliRunner) -> None:
    out = run(runner, "directory", "sign", mesh.draft, "--keystore", mesh.keystore,
              "--out", mesh.directory, "--valid-days", "7").output
    assert "serial 2, 3 members" in out
    assert json.loads(mesh.draft.read_text())["serial"] == 2
    out = run(runner, "directory", "verify", mesh.directory, "--anchor", mesh.anchor).output
    assert out.startswith("ok: serial 2, 3 members")


def test_revoked_key_refuses_events_it_signed(mesh: Mesh, runner: CliRunner) -> None:
    referral = mesh.write_json("referral.json", samples.referral())
    event = mesh.root / "event.bin"
    run(runner, *mesh.seal(referral, event))  # signed while the key was good
    old_key = signing_key_id(mesh.keystore, HOTLINE)

    run(runner, "directory", "revoke-key", mesh.draft, "--agency", HOTLINE, "--key", old_key)
    run(runner, "directory", "sign", mesh.draft, "--keystore", mesh.keystore,
        "--out", mesh.directory)

    line = fails(runner, 1, "open", "--as", SHELTER, event, *mesh.opts())
    assert line == "error: envelope rejected (revoked_key)"
    shown = run(runner, "directory", "show", mesh.directory, "--anchor", mesh.anchor).output
    assert re.search(rf"{old_key} +Ed25519 +revoked \d{{4}}-", shown)
    # The sender learns at once, not from a refusal at the recipient.
    line = fails(runner, 2, *mesh.seal(referral, mesh.root / "again.bin"))
    assert "revoked" in line and old_key in line


def test_re_adding_a_member_file_does_not_unrevoke_its_key(mesh: Mesh,
                                                           runner: CliRunner) -> None:
    key = signing_key_id(mesh.keystore, HOTLINE)
    run(runner, "directory", "revoke-key", mesh.draft, "--agency", HOTLINE, "--key", key)
    run(runner, "directory", "add", mesh.draft, mesh.keystore / "BH_NGO_HOTLINE.member.json")
    draft = json.loads(mesh.draft.read_text())
    hotline = next(m for m in draft["members"] if m["agencyId"] == HOTLINE)
    assert next(k for k in hotline["keys"] if k["keyId"] == key)["revokedAt"] is not None


def test_keystore_is_private_and_never_silently_replaced(mesh: Mesh,
                                                         runner: CliRunner) -> None:
    store = mesh.keystore / "BH_NGO_SHELTER.keystore"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    before = store.read_bytes()
    line = fails(runner, 2, "agency", "init", SHELTER, "--name", "x", "--role", "NGO",
                 "--country", "BH", "--keystore", mesh.keystore)
    assert str(store) in line and "--force" in line
    assert store.read_bytes() == before

    store.chmod(0o644)
    init_agency(runner, mesh.keystore, SHELTER, "--force")
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert store.read_bytes() != before
    assert not [p.name for p in mesh.keystore.iterdir() if p.name.endswith(".tmp")]


def test_out_to_a_pipe_is_written_not_replaced(mesh: Mesh, runner: CliRunner) -> None:
    """--out /dev/stdout or a pipe must be written to; replacing it would break the system."""
    pipe = mesh.root / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    referral = mesh.write_json("referral.json", samples.referral())
    run(runner, *mesh.seal(referral, pipe))
    reader.join(timeout=10)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert len(got) == 1 and got[0][:2] == b"\xc3\x01"


def test_default_scrypt_cost(tmp_path: Path, runner: CliRunner) -> None:
    """No fast_kdf here: a real keystore uses SCRYPT_N = 2**15 and unlocks."""
    init_agency(runner, tmp_path, COORD)
    store = tmp_path / "BH_GOV_MOFA.keystore"
    assert json.loads(store.read_text())["kdf"]["n"] == 2**15
    run(runner, "directory", "init", "--coordinator", COORD, "--out", tmp_path / "d.json")
    out = run(runner, "directory", "sign", tmp_path / "d.json", "--keystore", tmp_path,
              "--out", tmp_path / "directory.bin").output
    assert "serial 1, 0 members" in out


def test_passphrase_is_asked_for_when_no_variable_is_set(tmp_path: Path, runner: CliRunner,
                                                         fast_kdf) -> None:
    name, role = AGENCIES[SHELTER]
    args = ["agency", "init", SHELTER, "--name", name, "--role", role, "--country", "BH",
            "--keystore", str(tmp_path)]
    result = runner.invoke(cli, args, input="s3cret\ns3cret\n", env={"REFMESH_PASSPHRASE": None})
    assert result.exit_code == 0, result.output
    data = (tmp_path / "BH_NGO_SHELTER.keystore").read_bytes()
    assert keys.unlock(data, "s3cret").agency_id == SHELTER

    line = fails(runner, 2, *args, "--force", "--passphrase-env", "SHELTER_PASS")
    assert "SHELTER_PASS" in line and "not set" in line
    run(runner, *args, "--force", "--passphrase-env", "SHELTER_PASS",
        env={"SHELTER_PASS": "other"})
    data = (tmp_path / "BH_NGO_SHELTER.keystore").read_bytes()
    assert keys.unlock(data, "other").agency_id == SHELTER


# --- bad input: one line, the right exit code, no traceback -----------------------------------

def _seal(m: Mesh, doc=None, raw: str | None = None, **kw) -> list:
    path = m.root / "input.json"
    path.write_text(raw if raw is not None else json.dumps(doc))
    return m.seal(path, m.root / "out.bin", **kw)


def _person(**extra) -> dict:
    r = samples.referral()
    return {**r, "person": {**r["person"], **extra}}


def _member_with_first_key(m: Mesh, **key) -> list:
    doc = member_file(m.keystore, SHELTER)
    doc["keys"][0].update(key)
    return ["directory", "add", m.draft, m.write_json("mem.json", doc)]


# case: (mesh) -> (command line, substrings of the error line)
BAD_INPUT = {
    "missing file": lambda m: (
        m.seal(m.root / "nope.json", m.root / "o.bin"), ["nope.json", "does not exist"]),
    "directory instead of file": lambda m: (
        m.seal(m.root, m.root / "o.bin"), ["is a directory"]),
    "invalid JSON": lambda m: (
        _seal(m, raw='{\n  "referralId": "x",\n}\n'), ["input.json", "line 3 column 1"]),
    "repeated JSON key": lambda m: (
        _seal(m, raw='{"caseRef": "a", "caseRef": "b"}'), ["'caseRef' appears twice"]),
    "unknown field": lambda m: (
        _seal(m, _person(nickname="x")),
        ["input.json", "Referral.person.nickname: unknown field"]),
    "wrong type": lambda m: (
        _seal(m, {**samples.referral(), "consentVersion": "1"}),
        ["Referral.consentVersion", "expected int"]),
    "unknown agency": lambda m: (
        _seal(m, samples.referral(), to="BH/NGO/NOBODY"), ["BH/NGO/NOBODY", "not in directory"]),
    "bad agency id": lambda m: (
        _seal(m, samples.referral(), to="shelter"), ["'--to'", "COUNTRY/CLASS/CODE"]),
    "missing option": lambda m: (
        ["seal", "--from", HOTLINE, "--type", "referral", "x.json"],
        ["Missing option '--to'", "see 'refmesh seal --help'"]),
    "unknown command": lambda m: (["sael"], ["No such command 'sael'"]),
    "no keystore for the agency": lambda m: (
        [*_seal(m, samples.referral()), "--keystore", m.root / "empty"],
        ["keystore of BH/NGO/HOTLINE", "does not exist", "agency init"]),
    "anchor is not an object": lambda m: (
        ["directory", "verify", m.directory, "--anchor", m.write_json("a.json", [1])],
        ["trust anchor", "a.json", "JSON object"]),
    "member file with bad hex": lambda m: (
        _member_with_first_key(m, publicKey="zz"),
        ["mem.json", "Member.keys[0].publicKey", "hex"]),
    "member file with a key id that does not match": lambda m: (
        _member_with_first_key(m, publicKey="00" * 32), ["mem.json", "does not match"]),
    "revoke an unknown key": lambda m: (
        ["directory", "revoke-key", m.draft, "--agency", SHELTER, "--key", "sig-0"],
        ["draft", "has no key sig-0"]),
    "output directory missing": lambda m: (
        ["directory", "sign", m.draft, "--keystore", m.keystore, "--out",
         m.root / "nowhere" / "directory.bin"], ["nowhere", "does not exist"]),
    "draft already exists": lambda m: (
        ["directory", "init", "--coordinator", COORD, "--out", m.draft], ["already exists"]),
}


def _tampered_directory(m: Mesh, runner: CliRunner) -> list:
    data = m.directory.read_bytes()
    assert data.count(b"Workers Shelter") == 1
    m.directory.write_bytes(data.replace(b"Workers Shelter", b"Workers ShelteR"))
    return ["directory", "verify", m.directory, "--anchor", m.anchor]


def _not_a_directory(m: Mesh, runner: CliRunner) -> list:
    m.directory.write_bytes(b"not a directory")
    return ["directory", "show", m.directory, "--anchor", m.anchor]


def _sealed(m: Mesh, runner: CliRunner) -> Path:
    run(runner, *_seal(m, samples.referral()))
    return m.root / "out.bin"


def _forged_sender(m: Mesh, runner: CliRunner) -> list:
    event = _sealed(m, runner)
    data = event.read_bytes()
    assert data.count(HOTLINE.encode()) == 1  # the sender in the clear header
    event.write_bytes(data.replace(HOTLINE.encode(), b"BH/NGO/HOTLINF"))
    return ["open", "--as", SHELTER, event, *m.opts()]


def _truncated_event(m: Mesh, runner: CliRunner) -> list:
    event = _sealed(m, runner)
    event.write_bytes(event.read_bytes()[:-1])
    return ["open", "--as", SHELTER, event, *m.opts()]


# case: (command line maker, substrings of the error line)
REJECTED = {
    "tampered directory": (_tampered_directory, ["directory.bin", "does not verify"]),
    "directory that is not one": (_not_a_directory, ["not a signed directory"]),
    "forged sender": (_forged_sender, ["envelope rejected (unknown_sender)"]),
    "truncated event": (_truncated_event, ["envelope rejected (malformed)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case: str, mesh: Mesh, runner: CliRunner) -> None:
    args, needles = BAD_INPUT[case](mesh)
    line = fails(runner, 2, *args)
    for needle in needles:
        assert needle in line


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_input_is_one_line_and_exit_1(case: str, mesh: Mesh, runner: CliRunner) -> None:
    make, needles = REJECTED[case]
    line = fails(runner, 1, *make(mesh, runner))
    for needle in needles:
        assert needle in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(mesh: Mesh, runner: CliRunner) -> None:
    path = mesh.write_json("secret.json", samples.referral())
    path.chmod(0)
    line = fails(runner, 2, *mesh.seal(path, mesh.root / "o.bin"))
    assert "cannot read" in line and "secret.json" in line


def test_wrong_passphrase(mesh: Mesh, runner: CliRunner) -> None:
    referral = mesh.write_json("referral.json", samples.referral())
    line = fails(runner, 2, *mesh.seal(referral, mesh.root / "o.bin"),
                 env={"REFMESH_PASSPHRASE": "not the passphrase"})
    assert "wrong passphrase" in line and "BH_NGO_HOTLINE.keystore" in line
    assert "REFMESH_PASSPHRASE" in line
    assert not (mesh.root / "o.bin").exists()


def test_expired_directory_and_old_event(mesh: Mesh, runner: CliRunner,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    event = _sealed(mesh, runner)
    sealed_at = json.loads(run(runner, "open", "--as", SHELTER, event,
                               *mesh.opts()).output)["header"]["createdAt"]
    monkeypatch.setattr(common, "now_ms", lambda: sealed_at + 31 * DAY_MS)
    assert fails(runner, 1, "open", "--as", SHELTER, event, *mesh.opts()) == (
        "error: envelope rejected (too_old)")
    monkeypatch.setattr(common, "now_ms", lambda: sealed_at + 91 * DAY_MS)
    line = fails(runner, 1, "directory", "verify", mesh.directory, "--anchor", mesh.anchor)
    assert "expired" in line and "newer edition" in line
