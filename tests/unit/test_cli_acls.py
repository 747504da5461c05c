"""`refmesh topics acls`: the grants of the signed directory, printed (--dry-run) or handed to
kafkaedge.acls.apply_acls with the broker's admin settings; bad --region values are one line.
`refmesh topics users`: SCRAM users with passwords from the environment variables named, handed
to kafkaedge.acls.scram_users."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import kafkaedge.acls
from cli import cli, common
from refmesh import access, directory, keys

T0 = 1_790_000_000_000
DOMAIN, HOTLINE = "BH/GOV/NCCTIP", "BH/GOV/HOTLINE"
ARGS = ["topics", "acls", "--directory", "d", "--anchor", "a", "--bootstrap", "kafka.example:9093"]


@pytest.fixture
def trusted(monkeypatch) -> directory.TrustedDirectory:
    ks = {a: keys.generate(a, T0) for a in (DOMAIN, HOTLINE)}
    draft = directory.empty(DOMAIN)
    for agency, domain in ((DOMAIN, None), (HOTLINE, DOMAIN)):
        draft = directory.add_member(draft, directory.member_entry(
            ks[agency], agency, "CentralGovernmentOrganisation", "BH", domain, T0))
    signed = directory.load(directory.sign(draft, ks[DOMAIN], T0),
                            directory.TrustAnchor.of(ks[DOMAIN]), T0)
    monkeypatch.setattr(common, "trusted_directory", lambda *a: signed)
    return signed


@pytest.fixture
def applied(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    def apply_acls(admin_config, grants, *, prune=True):
        calls.append((admin_config, list(grants), prune))
        return ["created"] * 3, ["removed"]

    monkeypatch.setattr(kafkaedge.acls, "apply_acls", apply_acls)
    return calls


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"REFMESH_BOOTSTRAP": None, "REFMESH_CONFIG": None})


def test_dry_run_prints_every_grant_and_touches_no_broker(runner, trusted, applied):
    result = runner.invoke(cli, [*ARGS, "--region", f"{DOMAIN}=GCC", "--dry-run"])
    assert result.exit_code == 0, result.output
    grants = access.mesh_grants(trusted, {DOMAIN: "GCC"})
    lines = result.stdout.splitlines()
    assert len(lines) == len(grants) + 1 and f"{len(grants)} grants" in lines[-1]
    assert lines[0].split() == [grants[0].principal, grants[0].operation,
                                grants[0].resource_type, grants[0].pattern, grants[0].name]
    assert any(line.split()[0] == "region.GCC" for line in lines)
    assert applied == []


@pytest.mark.parametrize("flags, prune", [([], True), (["--no-prune"], False)])
def test_the_grants_go_to_apply_acls_with_the_brokers_admin_settings(
        runner, trusted, applied, flags, prune):
    result = runner.invoke(cli, [*ARGS, "--region", f"{DOMAIN}=GCC", *flags])
    assert result.exit_code == 0, result.output
    (config, grants, pruned), = applied
    assert config["bootstrap_servers"] == "kafka.example:9093"
    assert grants == access.mesh_grants(trusted, {DOMAIN: "GCC"})
    assert pruned is prune
    assert result.stdout.strip() == f"{len(grants)} grants present (3 ACLs created, 1 removed)"


@pytest.mark.parametrize("regions, words", [
    (["GCC"], "is not DOMAIN=REGION"),
    ([f"{DOMAIN}=GCC", f"{DOMAIN}=EU"], "two regions"),
    ([f"{HOTLINE}=GCC"], "is not a policy domain"),
    ([f"{DOMAIN}=G/C"], "is not a region code"),
])
def test_a_bad_region_is_one_error_line(runner, trusted, applied, regions, words):
    result = runner.invoke(cli, [*ARGS, *[x for r in regions for x in ("--region", r)]])
    assert result.exit_code == common.USAGE, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert applied == []


USERS = ["topics", "users", "--bootstrap", "kafka.example:9093"]


@pytest.fixture
def scram(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    def scram_users(admin_config, users):
        calls.append((admin_config, dict(users)))
        return sorted(users)

    monkeypatch.setattr(kafkaedge.acls, "scram_users", scram_users)
    return calls


def test_users_get_the_passwords_of_the_variables_named(runner, scram):
    env = {"HOTLINE_PW": "pw-hotline", "DOMAIN_PW": "pw-domain"}
    result = runner.invoke(cli, [*USERS, "--user", "agency.BH.GOV.HOTLINE=HOTLINE_PW",
                                 "--user", "domain.BH.GOV.NCCTIP=DOMAIN_PW"], env=env)
    assert result.exit_code == 0, result.output
    (config, users), = scram
    assert config["bootstrap_servers"] == "kafka.example:9093"
    assert users == {"agency.BH.GOV.HOTLINE": "pw-hotline", "domain.BH.GOV.NCCTIP": "pw-domain"}
    assert result.stdout.strip() == ("2 SCRAM-SHA-512 users present: agency.BH.GOV.HOTLINE, "
                                     "domain.BH.GOV.NCCTIP")
    assert "pw-" not in result.output


@pytest.mark.parametrize("users, env, words", [
    (["agency.BH.GOV.HOTLINE"], {}, "is not PRINCIPAL=ENV_VAR"),
    (["agency.BH.GOV.HOTLINE=UNSET_PW"], {"UNSET_PW": None}, "UNSET_PW (the password of "
                                                             "agency.BH.GOV.HOTLINE) is not set"),
    (["a=PW", "a=PW"], {"PW": "x"}, "a is given twice"),
    ([], {}, "Missing option '--user'"),
])
def test_a_bad_user_is_one_error_line(runner, scram, users, env, words):
    result = runner.invoke(cli, [*USERS, *[x for u in users for x in ("--user", u)]], env=env)
    assert result.exit_code == common.USAGE, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert scram == []
