"""The broker options every Kafka command shares (cli.common.broker_options): --config FILE (or
REFMESH_CONFIG) gives bootstrap, broker kind and TLS/SASL from a gateway's or the agents'
settings; --bootstrap and --broker override it; a bad file is one error line naming it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

import devmesh.sample_mesh
import gateways.scan
import kafkaedge.topics
from cli import audit, cli, common
from kafkaedge import profiles

PASSWORD_ENV = "TEST_KAFKA_PASSWORD"
SASL = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "domain-bh", "sasl_plain_password_env": PASSWORD_ENV}
GATEWAY = {"agency": "BH/GOV/HOTLINE", "keystore": "keys", "directory": "directory.bin",
           "anchor": "anchor.json", "bootstrap": "kafka-1.example:9093", "broker": "embedded",
           "security": SASL}
AGENTS = {"domain": "BH/GOV/NCCTIP", "policy": "policy.signed", "keystore": "keys",
          "directory": "directory.bin", "anchor": "anchor.json",
          "bootstrap": "kafka-2.example:9093", "broker": "apache"}


@pytest.fixture
def runner() -> CliRunner:
    # The developer's own REFMESH_* settings must not reach the commands under test.
    return CliRunner(env={"REFMESH_BOOTSTRAP": None, "REFMESH_CONFIG": None,
                          PASSWORD_ENV: "s3cret"})


@pytest.fixture
def seen(monkeypatch) -> list[dict]:
    """The consumer configs `refmesh audit verify` was given (it then finds no topic)."""
    configs: list[dict] = []
    monkeypatch.setattr(audit, "read_chains", lambda config, domain, **_: configs.append(
        config) or {})
    return configs


def settings_file(tmp_path, doc: dict, name: str = "settings.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def verify(runner, *args, **kwargs):
    return runner.invoke(cli, ["audit", "verify", "--domain", "BH/GOV/NCCTIP", *args], **kwargs)


def one_error_line(result) -> str:
    assert result.exit_code == common.USAGE, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_config_gives_bootstrap_profile_and_security_when_no_flag_is_given(
        runner, seen, tmp_path):
    result = verify(runner, "--config", settings_file(tmp_path, GATEWAY))
    assert "no audit topic refmesh.domain.BH.GOV.NCCTIP.audit on kafka-1.example:9093" in \
        result.stderr
    (config,) = seen
    assert config["bootstrap_servers"] == "kafka-1.example:9093"
    assert config["fetch_max_wait_ms"] == profiles.EMBEDDED.fetch_max_wait_ms  # embedded profile
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_plain_username"] == "domain-bh"
    assert config["sasl_plain_password"] == "s3cret"  # read from the variable the file names
    assert "sasl_plain_password_env" not in config


def test_flags_override_the_config(runner, seen, tmp_path):
    verify(runner, "--config", settings_file(tmp_path, GATEWAY), "--bootstrap", "10.0.0.1:9092",
           "--broker", "apache")
    (config,) = seen
    assert config["bootstrap_servers"] == "10.0.0.1:9092"
    assert config["isolation_level"] == profiles.APACHE.isolation_level
    assert config["sasl_plain_username"] == "domain-bh"  # no flag for it: still from the file


def test_the_config_can_come_from_the_environment_and_be_an_agents_file(runner, seen, tmp_path):
    path = settings_file(tmp_path, AGENTS)
    verify(runner, env={"REFMESH_CONFIG": path})
    (config,) = seen
    assert config["bootstrap_servers"] == "kafka-2.example:9093"
    assert config["isolation_level"] == profiles.APACHE.isolation_level
    assert "security_protocol" not in config  # PLAINTEXT: no security in the file


def test_without_config_or_flags_the_defaults_apply(runner, seen):
    verify(runner)
    (config,) = seen
    assert config["bootstrap_servers"] == "127.0.0.1:9092"
    assert config["isolation_level"] == profiles.APACHE.isolation_level
    assert "security_protocol" not in config


def test_an_unknown_key_is_one_line_naming_the_file_and_the_key(runner, seen, tmp_path):
    path = settings_file(tmp_path, {**GATEWAY, "bootstrapp": "x:1"})
    line = one_error_line(verify(runner, "--config", path))
    assert line.startswith(f"error: {path}: unrecognised setting(s) bootstrapp; known: ")
    assert seen == []


def test_a_missing_password_variable_is_one_line_naming_the_file_and_the_variable(
        runner, seen, tmp_path):
    path = settings_file(tmp_path, GATEWAY)
    line = one_error_line(verify(runner, "--config", path, env={PASSWORD_ENV: None}))
    assert line == (f"error: {path}: security: sasl_plain_password_env names the environment "
                    f"variable '{PASSWORD_ENV}', which is not set: export the SASL password "
                    "there")
    assert seen == []


@pytest.mark.parametrize("doc, words", [
    ({"bootstrap": "x:1", "keystore": "k"}, "names neither an agency (a gateway's settings) nor a domain"),
    ({**GATEWAY, "broker": "tansu"}, "broker must be one of embedded, apache, not 'tansu'"),
    ({**GATEWAY, "security": {**SASL, "sasl_mechanism": "GSSAPI"}},
     "security: sasl_mechanism 'GSSAPI' is not one of"),
])
def test_other_bad_files_are_one_line_naming_the_file(runner, seen, tmp_path, doc, words):
    path = settings_file(tmp_path, doc)
    line = one_error_line(verify(runner, "--config", path))
    assert path in line and words in line


def test_a_missing_config_file_is_one_line(runner, seen, tmp_path):
    line = one_error_line(verify(runner, "--config", str(tmp_path / "nope.yaml")))
    assert line == f"error: settings file {tmp_path / 'nope.yaml'} does not exist: check the path"


def test_every_kafka_command_takes_the_config(runner, tmp_path, monkeypatch):
    """topics ensure, scan, aggregates and mesh sample get the same broker from the file."""
    got: dict[str, object] = {}
    monkeypatch.setattr(common, "trusted_directory", lambda *a: SimpleNamespace(members={}))
    monkeypatch.setattr(kafkaedge.topics, "ensure_topics",
                        lambda admin, specs: got.setdefault("ensure", admin) and [])
    monkeypatch.setattr(gateways.scan, "scan", lambda config, canaries, topic_prefix: (
        got.setdefault("scan", config), SimpleNamespace(hits=[], short=[], messages=0, bytes=0,
                                                        topics=0))[1])
    monkeypatch.setattr("gateways.aggregates_reader.read_all",
                        lambda config, region, **_: got.setdefault("aggregates", config) and [])

    def build(root, bootstrap, now, broker, mount):
        got["sample"] = (bootstrap, broker)
        return SimpleNamespace(env={})

    monkeypatch.setattr(devmesh.sample_mesh, "build", build)
    config = settings_file(tmp_path, GATEWAY)
    (tmp_path / "canaries.txt").write_text("planted\n")
    (tmp_path / "mesh").mkdir()
    for args in (["topics", "ensure", "--directory", "d", "--anchor", "a"],
                 ["scan", "--canaries", str(tmp_path / "canaries.txt")],
                 ["aggregates", "export", "--region", "GCC", "--directory", "d", "--anchor", "a"],
                 ["mesh", "sample", "--out", str(tmp_path / "mesh")]):
        result = runner.invoke(cli, [*args, "--config", config])
        assert result.exit_code == 0, result.output
    for name in ("ensure", "scan", "aggregates"):
        assert got[name]["bootstrap_servers"] == "kafka-1.example:9093", name
        assert got[name]["sasl_plain_password"] == "s3cret", name
    assert got["sample"] == ("kafka-1.example:9093", "embedded")


def test_a_client_file_with_only_bootstrap_broker_and_security_is_enough(runner, seen,
                                                                         tmp_path):
    """What `refmesh broker --kind apache` writes for its super user: no keys, no directory."""
    client = {"bootstrap": "kafka-3.example:9093", "broker": "apache", "security": SASL}
    result = verify(runner, "--config", settings_file(tmp_path, client))
    assert "no audit topic" in result.output  # it got as far as reading (nothing there)
    assert seen[0]["bootstrap_servers"] == "kafka-3.example:9093"
    assert seen[0]["sasl_plain_password"] == "s3cret"
    assert seen[0]["isolation_level"] == profiles.APACHE.isolation_level
