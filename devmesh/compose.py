"""The sample mesh for docker-compose.yml: the Kafka side, made by the code the tests run, and
each compose service's own secrets.

``refmesh mesh sample --broker apache --mount /mesh`` calls ``write``, which writes the mesh
(``sample_mesh.build`` in mount mode: every process has secrets of its own) and then:

====================================  ==========================================================
``kafka/server.properties``           ``devmesh.apache.server_properties``, the function the
                                      tests' brokers run, with the client listener on all
                                      interfaces advertised as the compose service (``kafka``)
                                      and the admin's password read from the environment by
                                      Kafka's EnvVarConfigProvider: no secret in the file
``kafka/client.properties``           the admin's client for the healthcheck
                                      (kafka-broker-api-versions.sh), the same way
``kafka/tls/``                        ``devmesh.testca.make_tls`` for kafka, localhost, 127.0.0.1
                                      (broker.pem 0600, ca.pem 0644)
``config/admin-client.yaml``          the operator's client settings (bootstrap, broker,
                                      security) for the one-shot ``topics`` service
``env/<service>.env``                 per compose service, mode 0600: only what that service
                                      reads from its environment (``secret_envs``)
====================================  ==========================================================

tests/unit/test_compose.py checks docker-compose.yml against these files.
"""
from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from devmesh.apache import MECHANISM, Node, client_security, server_properties
from devmesh.brokers import password_env
from devmesh.sample_mesh import SAMPLE, Agency, MeshFiles, build
from devmesh.testca import TlsFiles, make_tls
from kafkaedge.loading import load_any_settings, write_file
from kafkaedge.profiles import PASSWORD_ENV
from refmesh.access import ADMIN, agency_principal, domain_principal
from refmesh.settings import GatewaySettings

KAFKA, TOPICS = "kafka", "topics"  # the compose services of the broker and the operator
KAFKA_DATA = Path("/var/lib/kafka")  # log.dirs is its data/: the apache/kafka image's volume
CLUSTER_ID_ENV = "REFMESH_KAFKA_CLUSTER_ID"
ENV_PROVIDER = {"config.providers": "env",
                "config.providers.env.class":
                    "org.apache.kafka.common.config.provider.EnvVarConfigProvider"}
TLS_DAYS = 365  # the sample CA's certificates; a real mesh uses its own PKI


def env_ref(name: str) -> str:
    """A Kafka config value read from the environment variable ``name`` at start-up."""
    return "${env:" + name + "}"


def service(agency: Agency) -> str:
    """The compose service of an agency's process: ``gateway-hotline`` for BH/GOV/HOTLINE,
    ``agents-bh`` for the policy domain of Bahrain."""
    if agency.domain is None:
        return f"agents-{agency.country.lower()}"
    return f"gateway-{agency.agency_id.rsplit('/', 1)[1].lower()}"


def principal(agency: Agency) -> str:
    return (domain_principal if agency.domain is None else agency_principal)(agency.agency_id)


@dataclass(frozen=True)
class KafkaSide:
    """The broker of docker-compose.yml: one KRaft node (broker and controller) that clients
    reach at ``host:port``; its files are under ``mount``/kafka inside the containers."""

    host: str
    port: int
    mount: PurePosixPath

    @classmethod
    def of(cls, bootstrap: str, mount: str) -> "KafkaSide":
        host, _, port = bootstrap.rpartition(":")
        if not host or not port.isdigit() or "," in bootstrap:
            raise ValueError(f"the compose broker's bootstrap must be one HOST:PORT, e.g. "
                             f"kafka:9092, not {bootstrap!r}")
        return cls(host, int(port), PurePosixPath(mount))

    @property
    def node(self) -> Node:
        return Node(1, self.port, self.port + 1, KAFKA_DATA)

    @property
    def tls(self) -> TlsFiles:
        """Where the TLS files are inside the containers."""
        folder = self.mount / "kafka" / "tls"
        return TlsFiles(ca=Path(folder / "ca.pem"), broker=Path(folder / "broker.pem"))

    def server_properties(self) -> dict[str, str]:
        props = server_properties(self.node, [self.node], self.tls,
                                  env_ref(password_env(ADMIN)), bind="0.0.0.0",
                                  advertise=self.host)
        return {**props, **ENV_PROVIDER}

    def client_properties(self) -> dict[str, str]:
        """The admin's Java client properties (kafka-broker-api-versions.sh --command-config)."""
        jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{ADMIN}" password="{env_ref(password_env(ADMIN))}";')
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": MECHANISM,
                "sasl.jaas.config": jaas, "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca), **ENV_PROVIDER}

    def security(self, user: str) -> dict:
        """A settings file's ``security`` for ``user``: TLS with the sample CA, SCRAM, the
        password in the environment variable ``password_env(user)``."""
        options = client_security(self.tls, user, None)
        del options["sasl_plain_password"]
        return {**options, PASSWORD_ENV: password_env(user)}


def secret_envs(settings_file: Path) -> list[str]:
    """The environment variables a gateway's or domain's agents' process reads, as its settings
    file names them: the keystore passphrase, the Kafka password, the domain's partition
    secret, and the API token (a gateway: gateways/gateway.py) or the pseudonymisation secret
    (the agents: agents/run.py)."""
    settings = load_any_settings(settings_file)
    names = [settings.passphrase_env, settings.partition_secret_env]
    if isinstance(settings, GatewaySettings):
        names.append(settings.api_token_env)
    else:
        names.append(settings.pseudonym_secret_env)
    if settings.security.get(PASSWORD_ENV):
        names.append(settings.security[PASSWORD_ENV])
    return names


def _properties(props: dict[str, str]) -> bytes:
    return "".join(f"{k}={v}\n" for k, v in props.items()).encode()


def write(root: Path, bootstrap: str, now: int, mount: str, agencies=SAMPLE,
          scrypt_n: int = 2**14) -> MeshFiles:
    """Write the sample mesh for docker-compose.yml under ``root`` (see the module's doc)."""
    side = KafkaSide.of(bootstrap, mount)
    passwords: dict[str, str] = {ADMIN: secrets.token_urlsafe(18)}

    def credentials(user: str) -> tuple[dict, dict]:
        passwords[user] = secrets.token_urlsafe(18)
        return side.security(user), {password_env(user): passwords[user]}

    files = build(root, bootstrap, now, agencies, broker="apache", mount=mount,
                  credentials=credentials, scrypt_n=scrypt_n)
    (root / "kafka").mkdir(exist_ok=True)
    make_tls(root / "kafka" / "tls", (side.host, "localhost", "127.0.0.1"), days=TLS_DAYS)
    write_file(root / "kafka" / "server.properties", _properties(side.server_properties()),
               mode=0o644)
    write_file(root / "kafka" / "client.properties", _properties(side.client_properties()),
               mode=0o644)
    admin = {"bootstrap": bootstrap, "broker": "apache", "security": side.security(ADMIN)}
    write_file(root / "config" / "admin-client.yaml",
               yaml.safe_dump(admin, sort_keys=True).encode(), mode=0o644)
    admin_env = {password_env(ADMIN): passwords[ADMIN]}
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    envs = {KAFKA: {**admin_env, CLUSTER_ID_ENV: cluster_id},
            # the operator creates every principal's SCRAM user (refmesh topics users)
            TOPICS: {**admin_env, **{password_env(user): password
                                     for user, password in passwords.items()}}}
    for agency in agencies:
        settings = (files.agents_config(agency.agency_id) if agency.domain is None
                    else files.gateway_config(agency.agency_id))
        envs[service(agency)] = {name: files.env[name] for name in secret_envs(settings)}
    (root / "env").mkdir(exist_ok=True)
    for name, env in envs.items():
        write_file(root / "env" / f"{name}.env",
                   "".join(f"{k}={v}\n" for k, v in sorted(env.items())).encode())
    files.env.update(admin_env)
    return files
