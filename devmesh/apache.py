"""Start and stop a local Apache Kafka 4 broker (KRaft, combined broker and controller) from the
jars that ``broker/pom.xml`` resolves from Maven Central.

One node by default; ``nodes=3`` gives the three-node cluster of the replication drill. With
``security=True`` (the default) clients reach the brokers only over SASL_SSL with SCRAM-SHA-512,
TLS from a throw-away CA (``devmesh.testca``), the StandardAuthorizer and
``allow.everyone.if.no.acl.found=false``: a principal without an ACL can do nothing. The brokers
talk to each other over the same SASL_SSL listener as the ``admin`` super user; only the KRaft
controller listener is PLAINTEXT on loopback (its connections are ``User:ANONYMOUS``, which
must be a super user for the controller to serve its own brokers), so it is never advertised to
clients. See shared/BROKER.md part 2 and docs/operators.md (Brokers: embedded and Apache
Kafka).

The server properties come from ``server_properties``, which also writes the production
broker's file for docker-compose.yml (``devmesh.compose``, checked by tests/unit/test_compose.py),
so that the production file runs the configuration the tests run.
"""
from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from devmesh.tansu import HOST, BrokerError, free_port
from devmesh.testca import TlsFiles, make_tls
from kafkaedge.loading import write_file
from refmesh.access import ADMIN

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "broker" / "pom.xml"
LIBS = ROOT / "broker" / "target" / "libs"
MECHANISM = "SCRAM-SHA-512"
JVM = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
       "-Djava.awt.headless=true"]
_POLL_S = 0.1
LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


def java_problem() -> str | None:
    """Why Apache Kafka cannot run here (no Java 17+, no Maven, no clone), or None."""
    if not POM.is_file() and not _libs_ready():
        return (f"the local Apache Kafka broker is built from {POM}, which only a clone of the "
                "repository has (an installed package does not): run it from a clone, or use "
                "the embedded broker or your own Kafka")
    java, mvn = shutil.which("java"), shutil.which("mvn")
    fix = ("install them, e.g. `apt-get install openjdk-17-jre-headless maven` on Debian, "
           "and put java and mvn on PATH")
    if java is None or (mvn is None and not _libs_ready()):
        missing = " and ".join(n for n, p in (("Java 17+", java), ("Maven", mvn)) if p is None)
        return f"Apache Kafka needs {missing}: {fix}"
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        return f"Apache Kafka 4 needs Java 17 or newer; `java -version` says: {out.strip()}; {fix}"
    return None


def _libs_ready() -> bool:
    return LIBS.is_dir() and any(LIBS.glob("kafka_2.13-*.jar"))


def resolve_classpath(timeout: float = 900.0) -> Path:
    """The folder of the broker's jars, resolving them with Maven the first time."""
    if _libs_ready():
        return LIBS
    problem = java_problem()
    if problem:
        raise BrokerError(problem)
    done = subprocess.run(["mvn", "-q", "-B", "-f", str(POM), "package"], capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0 or not _libs_ready():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not resolve the Kafka broker's jars ({POM}); is Maven "
                          f"Central reachable? Its last output:\n{tail}")
    return LIBS


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int  # clients and the other brokers
    controller_port: int
    folder: Path

    @property
    def log_dir(self) -> Path:
        return self.folder / "data"


def server_properties(node: Node, voters: list[Node], security: TlsFiles | None,
                      admin_password: str | None, *, bind: str = HOST,
                      advertise: str = HOST) -> dict[str, str]:
    """The broker's server.properties as a mapping (one node of ``voters``). Clients connect to
    ``bind`` (all interfaces in a container: 0.0.0.0) and are told ``advertise`` (the host name
    they reach the broker by); the controller listener stays on loopback, never advertised.
    ``admin_password`` may be a config provider reference (``${env:NAME}``), as the
    docker-compose file's broker has it (devmesh.compose)."""
    single = len(voters) == 1
    replication = "1" if single else "3"
    listener = "SASL_SSL" if security else "PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "listeners": f"{listener}://{bind}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"{listener}://{advertise}:{node.port}",
        "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "log.dirs": str(node.log_dir),
        "num.partitions": "4",
        "default.replication.factor": replication,
        "min.insync.replicas": "1" if single else "2",
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": "1" if single else "2",
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": "1" if single else "2",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "unclean.leader.election.enable": "false",
        "log.flush.interval.messages": "1" if not single else "9223372036854775807",
    }
    if single:
        props["controller.quorum.bootstrap.servers"] = f"{HOST}:{node.controller_port}"
    else:
        props["controller.quorum.voters"] = ",".join(
            f"{v.node_id}@{HOST}:{v.controller_port}" for v in voters)
    if security:
        jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{ADMIN}" password="{admin_password}";')
        props.update({
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(security.broker),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(security.ca),
            "ssl.client.auth": "none",
            "authorizer.class.name":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
        })
    return props


def client_security(tls: TlsFiles | None, user: str | None = None,
                    password: str | None = None) -> dict:
    """kafka-python security options for ``user`` on this broker ({} without security)."""
    if tls is None:
        return {}
    options = {"security_protocol": "SASL_SSL", "ssl_cafile": str(tls.ca)}
    if user is not None:
        options.update(sasl_mechanism=MECHANISM, sasl_plain_username=user,
                       sasl_plain_password=password)
    return options


class ApacheBroker:
    """A local Apache Kafka (one node, or a KRaft cluster of ``nodes``) run from its jars.

    Use as a context manager or start()/stop(). ``folder`` keeps the logs, data and TLS files
    (a temporary folder, removed at stop, when not given). ``security`` turns on SASL_SSL,
    SCRAM-SHA-512 and ACLs; ``add_users`` then creates SCRAM users at run time.
    """

    def __init__(self, folder: str | Path | None = None, *, nodes: int = 1,
                 security: bool = True, heap: str = "512m") -> None:
        if nodes not in (1, 3):
            raise BrokerError(f"nodes must be 1 or 3, not {nodes}")
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="refmesh-kafka-"))
        self.security = security
        self.heap = heap
        self.admin_password = secrets.token_urlsafe(18) if security else None
        self.tls: TlsFiles | None = None
        self.nodes = [Node(i + 1, 0, 0, self.folder / f"node-{i + 1}") for i in range(nodes)]
        self._procs: dict[int, subprocess.Popen] = {}

    # --- addresses and credentials -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if not self._procs:
            raise BrokerError("the Apache Kafka broker is not running: call start() first")
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    def client_security(self, user: str | None = None, password: str | None = None) -> dict:
        """kafka-python security options for ``user`` (the admin when no user is named)."""
        if user is None and self.security:
            user, password = ADMIN, self.admin_password
        return client_security(self.tls, user, password)

    def running(self, node_id: int | None = None) -> bool:
        ids = [node_id] if node_id else [n.node_id for n in self.nodes]
        return all(i in self._procs and self._procs[i].poll() is None for i in ids)

    def log_tail(self, node_id: int = 1, lines: int = 20) -> str:
        path = self._node(node_id).folder / "server.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    # --- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> str:
        """Format the storage, start every node and return the bootstrap address once the
        cluster answers a metadata request."""
        if self._procs:
            raise BrokerError("the Apache Kafka broker is already running: stop() it first")
        libs = resolve_classpath()
        self.nodes = [Node(n.node_id, free_port(), free_port(), n.folder) for n in self.nodes]
        if self.security:
            self.tls = make_tls(self.folder / "tls")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for node in self.nodes:
            self._format(libs, node, cluster_id)
        for node in self.nodes:
            self._launch(libs, node)
        atexit.register(self.stop)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _write_config(self, node: Node) -> Path:
        node.folder.mkdir(parents=True, exist_ok=True)
        props = server_properties(node, self.nodes, self.tls, self.admin_password)
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        write_file(node.folder / "log4j2.properties",
                   LOG4J.format(log=node.folder / "server.log").encode())
        return write_file(node.folder / "server.properties", text.encode())

    def _format(self, libs: Path, node: Node, cluster_id: str) -> None:
        config = self._write_config(node)
        argv = ["java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
                f"--cluster-id={cluster_id}", "-c", str(config)]
        if len(self.nodes) == 1:
            argv.append("--standalone")
        if self.security:
            argv += ["--add-scram", f"{MECHANISM}=[name={ADMIN},password={self.admin_password}]"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env=self._env(node))
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka node {node.node_id}'s storage failed "
                              f"({' '.join(argv[:6])} ...):\n{done.stdout}{done.stderr}")

    def _env(self, node: Node) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KAFKA_", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"))}
        env["LOG_DIR"] = str(node.folder)
        return env

    def _launch(self, libs: Path, node: Node) -> None:
        argv = ["java", f"-Xmx{self.heap}", *JVM[1:],
                f"-Dlog4j2.configurationFile={node.folder / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={node.folder}", "-cp", f"{libs}/*", "kafka.Kafka",
                str(node.folder / "server.properties")]
        out = open(node.folder / "stdout.log", "ab")
        try:
            self._procs[node.node_id] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self._env(node), start_new_session=True)
        finally:
            out.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every running node answers and knows every other one."""
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            for node_id, proc in self._procs.items():
                if proc.poll() is not None:
                    raise BrokerError(
                        f"Kafka node {node_id} exited with code {proc.returncode} before it "
                        f"was ready. Its log ({self._node(node_id).folder / 'server.log'}):\n"
                        f"{self.log_tail(node_id)}")
            error = self._probe()
            if error is None:
                return
            time.sleep(_POLL_S)
        raise BrokerError(f"Apache Kafka at {self.bootstrap} did not answer within "
                          f"{timeout:.0f} s (last error: {error!r}); pass a longer timeout if "
                          f"the machine is busy. Log of node 1:\n{self.log_tail(1)}")

    def admin(self, **extra) -> KafkaAdminClient:
        """An admin client as the ``admin`` super user."""
        running = ",".join(f"{HOST}:{n.port}" for n in self.nodes if self.running(n.node_id))
        return KafkaAdminClient(bootstrap_servers=running, client_id="refmesh-kafka-probe",
                                request_timeout_ms=10000, **self.client_security(), **extra)

    def _probe(self) -> Exception | None:
        try:
            admin = self.admin(bootstrap_timeout_ms=2000)
        except KafkaError as exc:
            return exc
        try:
            brokers = admin.describe_cluster()["brokers"]
            alive = sum(1 for n in self.nodes if self.running(n.node_id))
            if len(brokers) < alive:
                return BrokerError(f"{len(brokers)} of {alive} brokers registered")
            return None
        except KafkaError as exc:
            return exc
        finally:
            admin.close()

    def add_users(self, users: dict[str, str]) -> None:
        """Create or update SCRAM-SHA-512 users (name -> password) at run time."""
        if not self.security:
            raise BrokerError("this broker runs without security: it has no users")
        admin = self.admin()
        try:
            result = admin.alter_user_scram_credentials([
                UserScramCredentialUpsertion(name, ScramMechanism.SCRAM_SHA_512, password)
                for name, password in users.items()])
        finally:
            admin.close()
        failed = {user: error for user, error in result.items() if error}
        if failed:
            raise BrokerError(f"could not create SCRAM users: {failed}")

    def kill(self, node_id: int = 1, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node (SIGKILL by default: a crash) and wait for it to exit."""
        proc = self._procs[node_id]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=60)

    def restart(self, node_id: int = 1, timeout: float = 90.0) -> None:
        """Start a stopped node again on its ports and data, and wait until it is back."""
        if self.running(node_id):
            raise BrokerError(f"Kafka node {node_id} is still running")
        self._launch(LIBS, self._node(node_id))
        self.wait_ready(timeout)

    def active_controller(self) -> int:
        """The node id of the KRaft quorum's leader, as the running nodes' quorum state says."""
        leaders = []
        for node in self.nodes:
            state = node.log_dir / "__cluster_metadata-0" / "quorum-state"
            if self.running(node.node_id) and state.exists():
                try:
                    leaders.append(json.loads(state.read_text()).get("leaderId", -1))
                except ValueError:
                    continue
        leaders = [n for n in leaders if n > 0]
        if not leaders:
            raise BrokerError("no node knows the KRaft quorum's leader yet")
        return max(set(leaders), key=leaders.count)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node (a clean shutdown), SIGKILL after ``timeout``; remove a temporary
        folder. Safe to call any number of times."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._procs.clear()
        atexit.unregister(self.stop)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "ApacheBroker":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
