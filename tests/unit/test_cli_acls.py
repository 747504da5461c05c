"""`refmesh topics acls`: the grants of the signed directory, printed (--dry-run) or handed to
kafkaedge.acls.apply_acls with the broker's admin settings; bad --region values are one line."""
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
