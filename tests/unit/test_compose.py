"""docker-compose.yml against the files `refmesh mesh sample --broker apache --mount /mesh` writes
(devmesh/compose.py): the broker image is the Kafka the tests run, its server.properties is
``server_properties`` (the tests' brokers' configuration), every service gets only its own secrets
and files, and no secret is in the compose file. Read, not run: no Docker engine here."""
from __future__ import annotations

import re
import shlex
import stat
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from devmesh.apache import Node, server_properties
from devmesh.testca import TlsFiles
from kafkaedge.loading import keystore_path
from refmesh import keys
from refmesh.access import ADMIN, agency_principal, domain_principal

ROOT = Path(__file__).resolve().parents[2]
MOUNT = PurePosixPath("/mesh")
ADMIN_ENV = "REFMESH_KAFKA_PASSWORD_admin"
PROVIDERS = {"config.providers": "env", "config.providers.env.class":
             "org.apache.kafka.common.config.provider.EnvVarConfigProvider"}
#: what decides who may connect and do what: these must be what the tests' brokers run
SECURITY = re.compile(r"^(sasl\.|ssl\.|listener|advertised\.listeners$|authorizer\.class\.name$|"
                      r"allow\.everyone\.if\.no\.acl\.found$|super\.users$|"
                      r"inter\.broker\.listener\.name$|controller\.)")
RUNS = {"gateway": "agency", "agents": "domain"}  # `refmesh <x> run` and what its settings name


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Path:
    """The project folder as docs/operators.md (Production) has it: the sample mesh in ./mesh."""
    project = tmp_path_factory.mktemp("project")
    result = CliRunner().invoke(cli, ["mesh", "sample", "--out", str(project / "mesh"),
                                      "--bootstrap", "kafka:9092", "--broker", "apache",
                                      "--mount", str(MOUNT)])
    assert result.exit_code == 0, result.output
    return project / "mesh"


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def env_file(path: Path) -> dict[str, str]:
    return properties(path)


def host_path(mesh: Path, inside: str) -> Path:
    """Where a path under the mount is in the project folder."""
    return mesh / PurePosixPath(inside).relative_to(MOUNT)


def apps(compose: dict) -> dict[str, tuple[str, dict]]:
    """{service: (gateway or agents, its settings)} for every gateway and domain's agents."""
    found = {}
    for name, service in compose["services"].items():
        command = service.get("command", [])
        if command[:2] in (["gateway", "run"], ["agents", "run"]):
            found[name] = (command[0], command[command.index("--config") + 1])
    return found


def settings_of(mesh: Path, inside: str) -> dict:
    return yaml.safe_load(host_path(mesh, inside).read_text())


def kafka_version() -> str:
    pom = ET.parse(ROOT / "broker" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return pom.find("m:properties/m:kafka.version", ns).text


def binds(service: dict) -> dict[str, str]:
    """{path inside: host path} of a service's bind mounts (named volumes left out)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source
    return found


# --- the broker --------------------------------------------------------------------------------

def test_the_broker_image_is_the_kafka_the_tests_run(compose):
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    assert kafka_version().startswith("4.")


def test_the_server_properties_are_server_properties_for_the_compose_broker(mesh):
    """The whole file is ``server_properties`` for one node listening on all interfaces as
    kafka:9092 (controller on loopback 9093), the TLS files under the mount, the admin's password
    from the environment, plus the provider that reads it."""
    node = Node(1, 9092, 9093, Path("/var/lib/kafka"))
    tls = TlsFiles(ca=Path("/mesh/kafka/tls/ca.pem"), broker=Path("/mesh/kafka/tls/broker.pem"))
    expected = server_properties(node, [node], tls, "${env:%s}" % ADMIN_ENV, bind="0.0.0.0",
                                 advertise="kafka")
    written = properties(mesh / "kafka" / "server.properties")
    assert written == {**expected, **PROVIDERS}
    assert written["log.dirs"] == "/var/lib/kafka/data"  # the kafka-data volume


def test_its_security_is_what_the_tests_brokers_run(mesh, tmp_path):
    """Every security and authorizer key equals the configuration ApacheBroker starts in the tests
    (devmesh/apache.py), up to the host, ports, file places and the password's value."""
    node = Node(1, 40001, 40002, tmp_path)
    tested = server_properties(node, [node], TlsFiles(tmp_path / "ca.pem", tmp_path / "b.pem"),
                               "s3cret")
    written = properties(mesh / "kafka" / "server.properties")

    def normal(props: dict) -> dict:
        keep = {k: v for k, v in props.items() if SECURITY.match(k)}
        text = yaml.safe_dump(keep)
        for old, new in ((str(tmp_path / "ca.pem"), "CA"), ("/mesh/kafka/tls/ca.pem", "CA"),
                         (str(tmp_path / "b.pem"), "KEY"), ("/mesh/kafka/tls/broker.pem", "KEY"),
                         ("${env:%s}" % ADMIN_ENV, "PASSWORD"), ("s3cret", "PASSWORD"),
                         ("127.0.0.1:40001", "CLIENTS"), ("0.0.0.0:9092", "CLIENTS"),
                         ("kafka:9092", "CLIENTS"), ("127.0.0.1:40002", "127.0.0.1:CTL"),
                         ("127.0.0.1:9093", "127.0.0.1:CTL")):
            text = text.replace(old, new)
        return yaml.safe_load(text)

    assert normal(written) == normal(tested)
    assert {k for k in written if SECURITY.match(k)} >= {
        "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol", "ssl.keystore.location",
        "ssl.truststore.location", "authorizer.class.name", "allow.everyone.if.no.acl.found",
        "super.users", "inter.broker.listener.name",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"}
    assert written["allow.everyone.if.no.acl.found"] == "false"
    assert written["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"


def test_the_kafka_service_formats_once_and_runs_the_generated_file(compose, mesh):
    kafka = compose["services"]["kafka"]
    assert kafka["command"][:2] == ["sh", "-c"]
    script = kafka["command"][2]
    format_, start = script.split(" && ")
    argv = shlex.split(format_)
    assert argv[:2] == ["/opt/kafka/bin/kafka-storage.sh", "format"]
    assert {"--ignore-formatted", "--standalone"} <= set(argv)
    assert argv[argv.index("--config") + 1] == "/mesh/kafka/server.properties"
    # $$ is compose's escape: the container's shell expands the variables of kafka.env
    assert argv[argv.index("--add-scram") + 1] == (
        f"SCRAM-SHA-512=[name={ADMIN},password=$${ADMIN_ENV}]")
    assert shlex.split(start) == ["exec", "/opt/kafka/bin/kafka-server-start.sh",
                                  "/mesh/kafka/server.properties"]
    env = env_file(mesh / "env" / "kafka.env")
    assert set(re.findall(r"\$\$(\w+)", script)) == set(env) == {ADMIN_ENV,
                                                                 "REFMESH_KAFKA_CLUSTER_ID"}
    assert kafka["env_file"] == "mesh/env/kafka.env"
    assert binds(kafka) == {"/mesh/kafka": "./mesh/kafka"}
    assert sorted(p.name for p in (mesh / "kafka").rglob("*") if p.is_file()) == [
        "broker.pem", "ca.pem", "client.properties", "server.properties"]


def test_the_controller_listener_is_neither_published_nor_advertised(compose, mesh):
    kafka = compose["services"]["kafka"]
    assert "ports" not in kafka and "network_mode" not in kafka
    props = properties(mesh / "kafka" / "server.properties")
    assert "CONTROLLER://127.0.0.1:9093" in props["listeners"].split(",")
    assert "CONTROLLER" not in props["advertised.listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"


def test_the_healthcheck_is_an_authenticated_tls_client(compose, mesh):
    test = compose["services"]["kafka"]["healthcheck"]["test"]
    argv = shlex.split(test[1])
    assert argv[0] == "/opt/kafka/bin/kafka-broker-api-versions.sh"
    assert argv[argv.index("--bootstrap-server") + 1] == "localhost:9092"
    client = properties(host_path(mesh, argv[argv.index("--command-config") + 1]))
    assert client["security.protocol"] == "SASL_SSL"
    assert client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert f'username="{ADMIN}" password="${{env:{ADMIN_ENV}}}"' in client["sasl.jaas.config"]
    assert host_path(mesh, client["ssl.truststore.location"]).is_file()
    assert {k: client[k] for k in PROVIDERS} == PROVIDERS


def test_the_tls_files(mesh):
    tls = mesh / "kafka" / "tls"
    assert stat.S_IMODE((tls / "broker.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "ca.pem").stat().st_mode) == 0o644
    from cryptography import x509
    cert = x509.load_pem_x509_certificates((tls / "broker.pem").read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {"kafka", "localhost", "127.0.0.1"}


# --- the operator's one-shot service --------------------------------------------------------------

def test_the_topics_service_creates_topics_users_and_acls_as_admin(compose, mesh):
    topics = compose["services"]["topics"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert topics["entrypoint"] == ["sh", "-c"]
    steps = [shlex.split(step) for step in topics["command"][0].split(" && ")]
    assert [step[:3] for step in steps] == [["refmesh", "topics", "ensure"],
                                             ["refmesh", "topics", "users"],
                                             ["refmesh", "topics", "acls"]]
    for step in steps:
        assert step[step.index("--config") + 1] == "/mesh/config/admin-client.yaml"
    for step in (steps[0], steps[2]):
        assert step[step.index("--directory") + 1] == "/mesh/pub/directory.bin"
        assert step[step.index("--anchor") + 1] == "/mesh/pub/anchor.json"
    users = dict(steps[1][i + 1].split("=") for i, a in enumerate(steps[1]) if a == "--user")
    # a SCRAM user for the principal each gateway's and domain's settings file names, with the
    # password from the variable that file names
    named = {}
    for kind, config in apps(compose).values():
        security = settings_of(mesh, config)["security"]
        named[security["sasl_plain_username"]] = security["sasl_plain_password_env"]
    assert users == named and len(users) == 8
    assert set(env_file(mesh / "env" / "topics.env")) == {ADMIN_ENV, *users.values()}
    admin = settings_of(mesh, "/mesh/config/admin-client.yaml")
    assert admin == {"bootstrap": "kafka:9092", "broker": "apache", "security": {
        "security_protocol": "SASL_SSL", "ssl_cafile": "/mesh/kafka/tls/ca.pem",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": ADMIN,
        "sasl_plain_password_env": ADMIN_ENV}}
    assert binds(topics) == {"/mesh/pub": "./mesh/pub",
                             "/mesh/kafka/tls/ca.pem": "./mesh/kafka/tls/ca.pem",
                             "/mesh/config/admin-client.yaml": "./mesh/config/admin-client.yaml"}


# --- gateways and agents: their own settings, secrets and files ----------------------------------

def test_there_is_a_service_for_each_gateway_and_domain(compose, mesh):
    configs = sorted(f"/mesh/config/{p.name}" for p in (mesh / "config").glob("*.yaml")
                     if p.name != "admin-client.yaml")
    assert sorted(config for _, config in apps(compose).values()) == configs
    assert len(configs) == 8


def test_each_settings_file_names_its_own_principal_and_the_mounted_ca(compose, mesh):
    for name, (kind, config) in apps(compose).items():
        settings = settings_of(mesh, config)
        who = settings[RUNS[kind]]
        principal = (agency_principal if kind == "gateway" else domain_principal)(who)
        assert settings["security"] == {
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": principal, "ssl_cafile": "/mesh/kafka/tls/ca.pem",
            "sasl_plain_password_env": settings["security"]["sasl_plain_password_env"]}, name
        assert settings["bootstrap"] == "kafka:9092" and settings["broker"] == "apache"


def expected_envs(settings: dict, kind: str) -> set[str]:
    """What the process reads from its environment (gateways/gateway.py, agents/run.py)."""
    names = {settings["passphrase_env"], settings["security"]["sasl_plain_password_env"],
             settings["partition_secret_env"]}  # a gateway's keys, checked by its domain
    if kind == "gateway":
        return names | {settings["api_token_env"]}
    return names | {settings["pseudonym_secret_env"]}


def test_each_service_gets_only_its_own_secrets(compose, mesh):
    envs = {}
    for name, (kind, config) in apps(compose).items():
        service = compose["services"][name]
        assert service["env_file"] == f"mesh/env/{name}.env"
        path = mesh / "env" / f"{name}.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        env = env_file(path)
        settings = settings_of(mesh, config)
        assert set(env) == expected_envs(settings, kind), name
        assert all(env.values()), name
        envs[name] = (settings, env)
    admin_password = env_file(mesh / "env" / "kafka.env")[ADMIN_ENV]
    for name, (settings, env) in envs.items():
        assert admin_password not in env.values(), name
        for other, (other_settings, other_env) in envs.items():
            if other == name:
                continue
            shared = set(env.values()) & set(other_env.values())
            # only the partition secret of the domain both belong to (gateways, agents)
            allowed = ({env[settings["partition_secret_env"]]}
                       if settings.get("partition_secret_env")
                       == other_settings.get("partition_secret_env") is not None else set())
            assert shared <= allowed, (name, other)
    partition_secrets = {env[s["partition_secret_env"]] for s, env in envs.values()
                         if "partition_secret_env" in s}
    assert len(partition_secrets) == 2  # one per domain


def test_each_passphrase_opens_its_own_keystore_only(compose, mesh):
    items = list(apps(compose).items())
    for i, (name, (kind, config)) in enumerate(items):
        settings = settings_of(mesh, config)
        env = env_file(mesh / "env" / f"{name}.env")
        who = settings[RUNS[kind]]
        own = keystore_path(host_path(mesh, settings["keystore"]), who).read_bytes()
        assert keys.unlock(own, env[settings["passphrase_env"]]).agency_id == who
        neighbour_kind, neighbour_config = items[(i + 1) % len(items)][1]
        neighbour = settings_of(mesh, neighbour_config)[RUNS[neighbour_kind]]
        other = keystore_path(host_path(mesh, settings["keystore"]), neighbour).read_bytes()
        with pytest.raises(Exception):
            keys.unlock(other, env[settings["passphrase_env"]])


def test_each_service_mounts_only_its_own_files_and_every_file_it_reads(compose, mesh):
    for name, (kind, config) in apps(compose).items():
        service = compose["services"][name]
        settings = settings_of(mesh, config)
        who = settings[RUNS[kind]]
        keystore = str(keystore_path(settings["keystore"], who))
        mounted = binds(service)
        assert mounted == {"/mesh/pub": "./mesh/pub",
                           "/mesh/kafka/tls/ca.pem": "./mesh/kafka/tls/ca.pem",
                           config: "." + config, keystore: "." + keystore}, name
        assert all(volume.endswith(":ro") for volume in service["volumes"]
                   if volume.startswith("./")), name
        reads = [settings["directory"], settings["anchor"], settings["policy"],
                 settings["security"]["ssl_cafile"], keystore, config]
        for path in reads:
            assert any(path == inside or path.startswith(inside + "/") for inside in mounted), \
                (name, path)
            assert host_path(mesh, path).is_file(), (name, path)
        writes = settings["database"] if kind == "gateway" else settings["data_dir"]
        volume = next(v for v in service["volumes"] if not v.startswith("./"))
        assert writes.startswith(volume.split(":")[1] + "/"), name


def test_no_service_but_kafka_mounts_the_brokers_key_or_anyones_env_file(compose):
    for name, service in compose["services"].items():
        for source in binds(service).values():
            assert not source.startswith("./mesh/env"), name
            assert source != "./mesh" and source != "./mesh/keys", name
            if name != "kafka":
                assert not source.startswith("./mesh/kafka") or source.endswith("/ca.pem"), name


# --- secrets -------------------------------------------------------------------------------------

def test_no_secret_is_in_the_compose_file_or_any_mounted_file(mesh):
    secrets = {value for path in (mesh / "env").glob("*.env")
               for key, value in env_file(path).items() if key != "REFMESH_KAFKA_CLUSTER_ID"}
    assert len(secrets) > 8 * 3
    text = (ROOT / "docker-compose.yml").read_text()
    assert not [s for s in secrets if s in text]
    public = [*(mesh / "config").glob("*.yaml"), *(mesh / "pub").rglob("*.*"),
              mesh / "kafka" / "server.properties", mesh / "kafka" / "client.properties"]
    for path in public:
        content = path.read_bytes()
        assert not [s for s in secrets if s.encode() in content], path
    assert not (mesh / ".env").exists()  # no file with everyone's secrets
