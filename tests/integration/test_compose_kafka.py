"""docker-compose.yml's broker and services, run as the compose file runs them, without Docker.

`refmesh mesh sample --broker apache --mount /mesh` writes the mesh; the ``kafka`` service's own
command (format with the admin's SCRAM credential, then start on the generated
server.properties, the admin's password from the environment) runs against the Kafka jars the
tests use, through stand-ins for the image's two scripts; the ``topics`` service's command (topics,
SCRAM users, ACLs) runs as the operator; then the hotline's gateway and Bahrain's agents start,
each with nothing but its own env file, and answer /healthz. What a container changes is changed
in the files: the mount's paths become the folder's, the compose host names and ports become
loopback and free ports. Pinned to Apache Kafka: Tansu has no SCRAM users or ACLs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from cli import cli
from devmesh.apache import LOG4J, resolve_classpath
from devmesh.supervise import wait_until
from devmesh.tansu import free_port
from gateways.client import health_report
from kafkaedge import profiles
from kafkaedge.loading import load_any_settings
from refmesh import topology

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
HOTLINE, DOMAIN = "BH/GOV/HOTLINE", "BH/GOV/NCCTIP"


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This machine's environment without any refmesh or Kafka variable, plus ``extra``: a
    container's environment is its env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFMESH_", "KAFKA_"))}
    return {**env, **extra, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


class Host:
    """The project folder, with the container's paths, host names and ports made this
    machine's."""

    def __init__(self, root: Path) -> None:
        self.root, self.mesh = root, root / "mesh"
        self.port, self.controller = free_port(), free_port()
        self.data = root / "kafka-data"  # the kafka-data volume at /var/lib/kafka

    def localise(self, text: str) -> str:
        for inside, here in (("/mesh/", f"{self.mesh}/"), ("/var/lib/kafka", str(self.data)),
                             ("0.0.0.0:9092", f"127.0.0.1:{self.port}"),
                             ("kafka:9092", f"127.0.0.1:{self.port}"),
                             ("127.0.0.1:9093", f"127.0.0.1:{self.controller}")):
            text = text.replace(inside, here)
        return text

    def localise_files(self) -> None:
        for path in [*(self.mesh / "config").glob("*.yaml"),
                     *(self.mesh / "kafka").glob("*.properties")]:
            path.write_text(self.localise(path.read_text()))
        for path in (self.mesh / "config").glob("*.yaml"):  # each container has its own ports
            settings = yaml.safe_load(path.read_text())
            if "http_port" in settings:
                settings.update(http_port=free_port(), http_host="127.0.0.1")
            if "web_port" in settings:
                settings["web_port"] = free_port()
            path.write_text(yaml.safe_dump(settings, sort_keys=True))

    def script(self, service: str) -> str:
        """A service's shell command as its container's shell gets it ($$ is compose's $)."""
        command = COMPOSE["services"][service]["command"]
        return self.localise(command[-1]).replace("$$", "$")


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    """kafka-storage.sh and kafka-server-start.sh of the apache/kafka image: the same Kafka
    classes from broker/pom.xml's jars."""
    libs = resolve_classpath()
    bin_dir = tmp_path / "opt-kafka-bin"
    bin_dir.mkdir()
    log4j = tmp_path / "log4j2.properties"
    log4j.write_text(LOG4J.format(log=tmp_path / "kafka.log"))
    for name, main, heap in (("kafka-storage.sh", "kafka.tools.StorageTool", "256m"),
                             ("kafka-server-start.sh", "kafka.Kafka", "512m")):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec java -Xmx{heap} -XX:TieredStopAtLevel=1 '
                        f'-Dlog4j2.configurationFile={log4j} -cp "{libs}/*" {main} "$@"\n')
        path.chmod(0o755)
    return bin_dir


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("kafka", ["apache"])  # (not the session broker: its own, below)
def test_the_compose_services_run_with_only_their_own_files_and_secrets(kafka, tmp_path,
                                                                         stand_ins):
    host = Host(tmp_path)
    result = CliRunner().invoke(cli, ["mesh", "sample", "--out", str(host.mesh), "--bootstrap",
                                      "kafka:9092", "--broker", "apache", "--mount", "/mesh"])
    assert result.exit_code == 0, result.output
    host.localise_files()
    procs: list[subprocess.Popen] = []
    try:
        broker_env = clean_env(read_env(host.mesh / "env" / "kafka.env"))
        # a URL-safe cluster id starts with '-' once in 64: the storage tool must still take it
        # as the value of --cluster-id (a CI run failed on one)
        broker_env["REFMESH_KAFKA_CLUSTER_ID"] = "-" + broker_env["REFMESH_KAFKA_CLUSTER_ID"][1:]
        script = host.script("kafka").replace("/opt/kafka/bin/", f"{stand_ins}/")
        broker = start(["sh", "-c", script], broker_env, tmp_path / "kafka.out")
        procs.append(broker)
        admin = load_any_settings(host.mesh / "config" / "admin-client.yaml")
        admin_password = broker_env["REFMESH_KAFKA_PASSWORD_admin"]
        config = profiles.admin_config(profiles.PROFILES["apache"], admin.bootstrap, {
            **{k: v for k, v in admin.security.items() if k != profiles.PASSWORD_ENV},
            "sasl_plain_password": admin_password})

        def answers() -> bool:
            assert broker.poll() is None, (tmp_path / "kafka.out").read_text()[-3000:]
            try:
                KafkaAdminClient(**config, bootstrap_timeout_ms=2000).close()
                return True
            except KafkaError:
                return False

        wait_until(answers, 120, "the compose broker to answer its admin over SASL_SSL")

        refmesh = str(Path(sys.executable).parent / "refmesh")
        topics = re.sub(r"\brefmesh topics\b", f"{refmesh} topics", host.script("topics"))
        done = subprocess.run(["sh", "-c", topics], capture_output=True, text=True, timeout=300,
                              env=clean_env(read_env(host.mesh / "env" / "topics.env")),
                              cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "8 SCRAM-SHA-512 users present" in done.stdout, done.stdout
        assert "ACLs created" in done.stdout, done.stdout

        services = {"gateway-hotline": ("gateways.run", "gateway-BH_GOV_HOTLINE.yaml", "http_port"),
                    "agents-bh": ("agents.run", "agents-BH_GOV_NCCTIP.yaml", "web_port")}
        running = {}
        for name, (module, config_name, port_key) in services.items():
            path = host.mesh / "config" / config_name
            env = clean_env(read_env(host.mesh / "env" / f"{name}.env"))  # nothing else
            proc = start([sys.executable, "-m", module, "--config", str(path)], env,
                         tmp_path / f"{name}.log")
            procs.append(proc)
            running[name] = (proc, f"http://127.0.0.1:{yaml.safe_load(path.read_text())[port_key]}")
        for name, (proc, url) in running.items():
            def healthy() -> bool:
                assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                return health_report(url)["ok"] is True

            wait_until(healthy, 180, f"{name} to answer 200 on {url}/healthz")

        # the hotline's own credentials: its domain's inbox yes, the domain's audit chain no
        hotline_env = read_env(host.mesh / "env" / "gateway-hotline.env")
        settings = load_any_settings(host.mesh / "config" / "gateway-BH_GOV_HOTLINE.yaml")
        security = {k: v for k, v in settings.security.items() if k != profiles.PASSWORD_ENV}
        security["sasl_plain_password"] = hotline_env[settings.security[profiles.PASSWORD_ENV]]
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap, **security, acks="all",
                                 max_block_ms=10000, allow_auto_create_topics=False)
        try:
            producer.send(topology.domain_inbox(DOMAIN), b"probe").get(timeout=10)
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send(topology.audit(DOMAIN), b"probe").get(timeout=10)
        finally:
            producer.close()
        for name in services:  # no right its role needs is missing (e.g. a transactional id)
            log = (tmp_path / f"{name}.log").read_text(errors="replace")
            assert "AuthorizationFailed" not in log, log[-3000:]
    finally:
        for proc in reversed(procs):
            stop(proc)
