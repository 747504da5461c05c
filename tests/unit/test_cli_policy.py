"""`refmesh policy check | sign | verify | explain` on the sample mesh in tmp_path: summaries,
one-line errors with file, line and key, signed policies refused when tampered, and explain
output for an allowed and a refused referral."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from devmesh import sample_mesh
from cli import cli
from cli import policy as policy_cli
from cli.common import now_ms
from refmesh.errors import PolicyError
from tests import policy_samples as S

BH_DOMAIN, ET_DOMAIN = "BH/GOV/NCCTIP", "ET/GOV/NCC"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> sample_mesh.MeshFiles:
    root = tmp_path_factory.mktemp("mesh")
    return sample_mesh.build(root, "127.0.0.1:9", now_ms(), first_port=20000, scrypt_n=2**10)


@pytest.fixture
def runner(mesh) -> CliRunner:
    return CliRunner(env={"REFMESH_PASSPHRASE": mesh.env["REFMESH_PASSPHRASE"],
                          "REFMESH_KEYSTORE": None, "REFMESH_DIRECTORY": None,
                          "REFMESH_ANCHOR": None})


def run(runner: CliRunner, *args) -> Result:
    result = runner.invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def fails(runner: CliRunner, code: int, *args) -> str:
    result = runner.invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def signed(mesh, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "policy.signed"
    CliRunner(env={"REFMESH_PASSPHRASE": mesh.env["REFMESH_PASSPHRASE"]}).invoke(
        cli, ["policy", "sign", str(S.SAMPLE_POLICY), "--keystore", str(mesh.keystore),
              "--as", BH_DOMAIN, "--out", str(out)], catch_exceptions=False)
    return out


def mesh_opts(mesh) -> list:
    return ["--directory", mesh.directory, "--anchor", mesh.anchor]


# --- check ------------------------------------------------------------------------------------

def test_check_summarises_the_sample_policies(runner):
    out = run(runner, "policy", "check", S.SAMPLE_POLICY).output.splitlines()
    assert out[0] == f"ok: {S.SAMPLE_POLICY}"
    assert out[1] == ("policy BH/GOV/NCCTIP version 2026-11-28.1: 5 national rules, "
                      "1 cross-border rule")
    assert "  rule psych-support: HealthServiceOrganisation for Referral, Services: keep 12, " \
           "generalise 1, pseudonymise 1" in out
    assert any(line.startswith("  cross-border bh-to-et-return: BH -> ET for Return")
               for line in out)
    assert "ET/GOV/NCC" in run(runner, "policy", "check", S.SAMPLE_POLICY_ET).output


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = S.SAMPLE_POLICY.read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


POLICE_PHONE = "      person.mobilePhone: keep\n      victim.traffickingStatus: keep\n"
CROSSING_PURPOSES = ("    purposes: [Return]\n    fields:\n      caseRef: pseudonymise\n"
                     "      service.details")
SHELTER_GENDER = "      person.gender: keep\n      person.citizenship: keep\n"


@pytest.mark.parametrize("old, new, needle, says", [
    ("      person.birthdate: generalise     # age band only",
     "      person.birthdat: generalise", "person.birthdat:",
     ("rules[0] (shelter-services).fields: unknown field person.birthdat (did you mean "
      "person.birthdate?)")),
    (SHELTER_GENDER, SHELTER_GENDER.replace("gender: keep", "gender: squash"),
     "person.gender: squash", "rules[0] (shelter-services).fields.person.gender: unknown action"),
    (POLICE_PHONE, POLICE_PHONE.replace("mobilePhone: keep", "mobilePhone: generalise"),
     "person.mobilePhone: generalise",
     ("rules[1] (police-prosecution).fields.person.mobilePhone: person.mobilePhone cannot be "
      "given generalise")),
    (CROSSING_PURPOSES, CROSSING_PURPOSES.replace("purposes:", "purpose:"),
     "purpose: [Return]",
     "cross_border[0] (bh-to-et-return).purpose: unknown key 'purpose' (did you mean purposes?)"),
    ('version: "2026-11-28.1"', "version: 2026-11-28", "version: 2026-11-28",
     "version: expected non-empty text, got date 2026-11-28; quote it"),
    ("    to: [ET]", "    to: [NO]", "to: [NO]", "quote it: YAML reads NO"),
])
def test_check_names_file_line_and_key(runner, tmp_path, old, new, needle, says):
    path = _broken(tmp_path, old, new)
    line = fails(runner, 2, "policy", "check", path)
    assert line.startswith(f"error: {path} line {_line_of(path, needle)}: "), line
    assert says in line


def test_check_refuses_repeated_keys_and_broken_yaml(runner, tmp_path):
    path = _broken(tmp_path, "      person.middleName: keep\n",
                   "      person.middleName: keep\n      person.middleName: drop\n")
    line = fails(runner, 2, "policy", "check", path)
    assert f"line {_line_of(path, 'person.middleName: drop')}: " in line
    assert "rules[0].fields.person.middleName: the key person.middleName appears twice" in line
    path = _write(tmp_path, "domain: BH/GOV/NCCTIP\nrules: [\n", "broken.yaml")
    assert "not valid YAML" in fails(runner, 2, "policy", "check", path)
    assert "does not exist" in fails(runner, 2, "policy", "check", tmp_path / "none.yaml")


def test_check_of_a_signed_file_points_to_verify(runner, signed):
    assert "`refmesh policy verify`" in fails(runner, 2, "policy", "check", signed)


def test_load_yaml_maps_every_key_and_item_to_its_line():
    doc, lines = policy_cli.load_yaml(S.SAMPLE_POLICY.read_bytes(), "p.yaml")
    text = S.SAMPLE_POLICY.read_text().splitlines()
    assert text[lines["rules[2].fields.needs.medicalNotes"] - 1].strip() == \
        "needs.medicalNotes: keep"
    assert text[lines["rules[2]"] - 1].strip() == "- id: psych-support"
    assert doc["rules"][2]["id"] == "psych-support"
    with pytest.raises(PolicyError, match="not UTF-8"):
        policy_cli.load_yaml(b"\xff", "p.yaml")


# --- sign and verify --------------------------------------------------------------------------

def test_sign_and_verify(runner, mesh, signed, tmp_path):
    out = tmp_path / "p.signed"
    result = run(runner, "policy", "sign", S.SAMPLE_POLICY, "--keystore", mesh.keystore, "--as",
                 BH_DOMAIN, "--out", out)
    assert result.output.startswith(f"signed {out}: policy BH/GOV/NCCTIP version 2026-11-28.1")
    assert json.loads(out.read_text())["policy"] == S.SAMPLE_POLICY.read_text()
    verified = run(runner, "policy", "verify", signed, "--domain", BH_DOMAIN, *mesh_opts(mesh))
    assert verified.output.startswith(f"ok: {signed} signed by BH/GOV/NCCTIP with sig-")


def test_sign_refuses_another_domains_policy_and_an_invalid_one(runner, mesh, tmp_path):
    line = fails(runner, 2, "policy", "sign", S.SAMPLE_POLICY_ET, "--keystore", mesh.keystore,
                 "--as", BH_DOMAIN, "--out", tmp_path / "x.signed")
    assert "the policy is for ET/GOV/NCC, not BH/GOV/NCCTIP" in line
    bad = _broken(tmp_path, "      person.gender: keep\n", "      person.gendre: keep\n")
    assert "unknown field person.gendre" in fails(
        runner, 2, "policy", "sign", bad, "--keystore", mesh.keystore, "--as", BH_DOMAIN,
        "--out", tmp_path / "x.signed")
    assert not (tmp_path / "x.signed").exists()


def test_verify_refuses_tampered_unsigned_and_foreign_policies(runner, mesh, signed, tmp_path):
    doc = json.loads(signed.read_text())
    tampered = _write(tmp_path, json.dumps(
        {**doc, "policy": doc["policy"].replace("needs.medicalNotes: keep",
                                                "needs.medicalNotes: keep\n      "
                                                "victim.caseComment: keep")}), "t.signed")
    line = fails(runner, 1, "policy", "verify", tampered, "--domain", BH_DOMAIN,
                 *mesh_opts(mesh))
    assert "signature does not verify" in line
    line = fails(runner, 1, "policy", "verify", signed, "--domain", ET_DOMAIN, *mesh_opts(mesh))
    assert "signed for BH/GOV/NCCTIP, not for ET/GOV/NCC" in line
    line = fails(runner, 1, "policy", "verify", S.SAMPLE_POLICY, "--domain", BH_DOMAIN,
                 *mesh_opts(mesh))
    assert "not a signed policy (refmesh-policy/1); an unsigned policy is refused" in line


# --- explain ----------------------------------------------------------------------------------

def _json(tmp_path: Path, name: str, doc: dict) -> Path:
    return _write(tmp_path, json.dumps(doc), name)


def _explain(runner, mesh, tmp_path, policy, referral, consent=None, *extra) -> list[str]:
    args = ["policy", "explain", "--referral", _json(tmp_path, "r.json", referral),
            "--policy", policy, *mesh_opts(mesh), *extra]
    if consent is not None:
        args += ["--consent", _json(tmp_path, "c.json", consent)]
    return run(runner, *args).output.splitlines()


def test_explain_an_allowed_referral(runner, mesh, signed, tmp_path):
    out = _explain(runner, mesh, tmp_path, signed, S.referral(recipient="BH/GOV/HOTLINE"),
                   S.consent(), "--to", S.SHELTER)
    assert out[0] == ("referral 00000000-0000-4000-8000-000000000001: BH/GOV/HOTLINE "
                      "(CentralGovernmentOrganisation, BH) -> BH/GOV/SHELTER "
                      "(CentralGovernmentOrganisation, BH), purpose Services, legal basis "
                      "Consent")
    assert out[1].startswith("policy BH/GOV/NCCTIP version 2026-11-28.1, signed with sig-")
    assert out[2] == ("forward: legal basis Consent; policy BH/GOV/NCCTIP 2026-11-28.1; "
                      "rules shelter-services")
    row = {line.split()[0]: line.split(None, 1)[1].split() for line in out[3:]}
    assert row["person.birthdate"] == ["generalise", "->", "person.ageBand", "shelter-services"]
    assert row["needs.medicalNotes"] == ["dropped:", "no", "rule"]
    assert row["subjectId"] == ["pseudonymise", "always"]
    assert "Amina" not in "\n".join(out)


def test_explain_says_the_band_filled_is_replaced_by_the_generalised_birth_date(
        runner, mesh, signed, tmp_path):
    r = S.referral(recipient="BH/GOV/HOTLINE")
    r["person"]["ageBand"] = "40-44"  # shelter-services: ageBand keep, birthdate generalise
    out = _explain(runner, mesh, tmp_path, signed, r, S.consent(), "--to", S.SHELTER,
                   "--record")
    marker = out.index("record (pseudonyms computed with a throwaway key):")
    row = {line.split()[0]: line.split(None, 1)[1] for line in out[3:marker]}
    assert row["person.ageBand"].split() == ["keep,", "replaced", "by", "person.birthdate",
                                             "generalised", "shelter-services"]
    record = json.loads("\n".join(out[marker + 1:]))
    assert record["person"]["ageBand"] != "40-44" and record["person"]["birthdate"] is None


def test_explain_a_refused_referral(runner, mesh, signed, tmp_path):
    out = _explain(runner, mesh, tmp_path, signed, S.referral(), None, "--to", S.SHELTER)
    assert out[2] == ("refused: consent_missing (the policy domain holds no consent for this "
                      "person; record the consent first)")
    assert len(out) == 3
    out = _explain(runner, mesh, tmp_path, signed, S.referral(), S.consent(), "--to", S.POLICE,
                   "--purpose", "Services")
    assert out[2].startswith("refused: no_rule (policy 2026-11-28.1 has no rule for "
                             "LawEnforcement and Services)")
    out = _explain(runner, mesh, tmp_path, signed, S.referral(sender=S.IOM, purpose="Return"),
                   S.consent(controller=S.IOM), "--to", S.RECEPTION)
    assert out[2].startswith("refused: cross_border_not_consented")


def test_explain_a_legal_basis_and_the_record_with_a_yaml_draft(runner, mesh, tmp_path):
    r = S.referral(legalBasis="LegalObligation", consentId=None, consentVersion=None)
    out = _explain(runner, mesh, tmp_path, S.SAMPLE_POLICY, r, None, "--to", S.POLICE,
                   "--purpose", "Prosecution", "--record")
    assert "UNSIGNED draft sample_policy.yaml" in out[1]
    assert out[2].startswith("forward: legal basis LegalObligation;")
    record = json.loads("\n".join(out[out.index("record (pseudonyms computed with a throwaway "
                                                "key):") + 1:]))
    assert record["recipientAgency"] == S.POLICE and record["purpose"] == "Prosecution"
    assert record["subjectId"].startswith("ps-") and record["needs"]["medicalNotes"] is None
    assert record["victim"]["caseComment"] == r["victim"]["caseComment"]


def test_explain_errors_are_one_line(runner, mesh, signed, tmp_path):
    r = _json(tmp_path, "r.json", S.referral())
    line = fails(runner, 2, "policy", "explain", "--referral", r, "--policy",
                 S.SAMPLE_POLICY_ET, *mesh_opts(mesh))
    assert "the policy is for ET/GOV/NCC, not BH/GOV/NCCTIP" in line
    line = fails(runner, 2, "policy", "explain", "--referral",
                 _json(tmp_path, "x.json", S.referral(sender="BH/GOV/NOBODY")),
                 "--policy", signed, *mesh_opts(mesh))
    assert "BH/GOV/NOBODY is not in directory" in line
    bad = S.referral()
    bad["person"]["gender"] = "Female"
    line = fails(runner, 2, "policy", "explain", "--referral", _json(tmp_path, "b.json", bad),
                 "--policy", signed, *mesh_opts(mesh))
    assert "referral" in line and "person.gender" in line
    tampered = _write(tmp_path, signed.read_text().replace("keep", "kept", 1), "t.signed")
    assert "signature does not verify" in fails(
        runner, 1, "policy", "explain", "--referral", r, "--policy", tampered, *mesh_opts(mesh))
