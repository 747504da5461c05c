"""The sample mesh of DOMAIN.md, written to a folder: keys, signed directory, trust anchor and
one settings file per gateway and per policy domain. Used by ``make demo`` and the integration
tests. All synthetic.

Two jurisdictions: Bahrain (policy domain: the National Committee, which also coordinates the
mesh and signs the directory) and an origin country, Ethiopia (its own national committee as
policy domain, with a reception agency).
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from devmesh.tansu import free_port
from kafkaedge.loading import keystore_path, write_file
from refmesh import access, directory, keys, signed_policy

COORDINATOR = "BH/GOV/NCCTIP"
HERE = Path(__file__).resolve().parent
AGENTS_WEB_PORT = 6066  # the agents' /healthz inside their container (faust's default port)
POLICIES = {"BH": HERE / "sample_policy.yaml", "ET": HERE / "sample_policy_et.yaml"}


@dataclass(frozen=True)
class Agency:
    agency_id: str
    name: str
    role: str
    country: str
    domain: str | None  # None: the agency is a policy domain itself


SAMPLE = (
    Agency(COORDINATOR, "National Committee for Combating Trafficking in Persons (sample)",
           "CentralGovernmentOrganisation", "BH", None),
    Agency("BH/GOV/HOTLINE", "Trafficking hotline (sample)", "CentralGovernmentOrganisation",
           "BH", COORDINATOR),
    Agency("BH/GOV/MOI-ATU", "Police anti-trafficking unit (sample)", "LawEnforcement", "BH",
           COORDINATOR),
    Agency("BH/GOV/SHELTER", "Shelter for workers (sample)", "CentralGovernmentOrganisation",
           "BH", COORDINATOR),
    Agency("BH/NGO/PSYCH", "Psychological support service (sample)",
           "HealthServiceOrganisation", "BH", COORDINATOR),
    Agency("BH/IO/IOM", "IOM country office (sample)", "IntergovernmentalOrganisation", "BH",
           COORDINATOR),
    Agency("ET/GOV/NCC", "Origin-country national committee (sample)",
           "CentralGovernmentOrganisation", "ET", None),
    Agency("ET/NGO/RECEPTION", "Reception and reintegration agency (sample)", "NGO", "ET",
           "ET/GOV/NCC"),
)


def renamed(suffix: str, agencies=SAMPLE) -> tuple[Agency, ...]:
    """The same mesh with ``-SUFFIX`` on every agency code, so that tests sharing one broker
    never share a topic."""
    def rename(agency_id: str | None) -> str | None:
        return None if agency_id is None else f"{agency_id}-{suffix.upper()}"

    return tuple(Agency(rename(a.agency_id), a.name, a.role, a.country, rename(a.domain))
                 for a in agencies)


@dataclass(frozen=True)
class MeshFiles:
    root: Path
    keystore: Path
    directory: Path
    anchor: Path
    env: dict  # environment the processes need: passphrase, partition secret, API tokens

    def gateway_config(self, agency_id: str) -> Path:
        return self.root / "config" / f"gateway-{agency_id.replace('/', '_')}.yaml"

    def agents_config(self, domain_id: str) -> Path:
        return self.root / "config" / f"agents-{domain_id.replace('/', '_')}.yaml"

    def token(self, agency_id: str) -> str:
        return self.env[token_env(agency_id)]


def env_name(prefix: str, agency_id: str) -> str:
    """An environment variable of one agency: REFMESH_API_TOKEN + BH/GOV/MOI-ATU ->
    REFMESH_API_TOKEN_BH_GOV_MOI_ATU."""
    return f"{prefix}_" + agency_id.replace("/", "_").replace("-", "_")


def token_env(agency_id: str) -> str:
    return env_name("REFMESH_API_TOKEN", agency_id)


def own_secret_envs(agency: Agency) -> dict[str, str]:
    """The settings naming the environment variables of an agency's own secrets when each
    process gets only its own (``build(mount=...)``, for docker-compose.yml): its keystore's
    passphrase; its domain's partition secret (the gateways key the person's events with it,
    the domain's agents check those keys); for a domain's agents also its pseudonymisation
    secret. Every name is unique in the mesh."""
    domain = agency.domain or agency.agency_id
    names = {"passphrase_env": env_name("REFMESH_PASSPHRASE", agency.agency_id),
             "partition_secret_env": env_name("REFMESH_PARTITION_SECRET", domain)}
    if agency.domain is None:
        names["pseudonym_secret_env"] = env_name("REFMESH_PSEUDONYM_SECRET", domain)
    return names


def build(root: Path, bootstrap: str, now: int, agencies=SAMPLE, broker: str = "embedded",
          first_port: int | None = None, passphrase: str | None = None, scrypt_n: int = 2**14,
          resend_after_ms: int = 3000, mount: str | None = None,
          credentials: Callable[[str], tuple[dict, dict]] | None = None,
          partitions: int | None = None) -> MeshFiles:
    """Write the whole sample mesh under ``root`` and return where everything is. The first
    agency coordinates the mesh: it signs the directory. Gateways listen on ``first_port`` and
    up, or on free ports when it is None; each domain's agents answer /healthz on a free port
    (``web_port``). ``credentials(principal)``, if given, returns the broker security settings
    of that principal (refmesh.access) and the environment variables they name (its password),
    for each gateway's and each domain's settings file. ``partitions``, if given, is written
    into every settings file (the partitions of the topics each process creates).

    With ``mount`` (the folder as containers see it, for docker-compose.yml) every process has
    secrets of its own under names of its own (``own_secret_envs``): each keystore its own
    passphrase, each domain its own partition and pseudonymisation secrets, so that each
    container can be given only its own (devmesh.compose); and the public files (signed
    directory, trust anchor, signed policies) go in ``pub/``, one folder every container
    mounts."""
    own = mount is not None
    public = root / "pub" if own else root
    for folder in ("keys", "config", "state", "agents"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    public.mkdir(exist_ok=True)
    passphrase = passphrase or secrets.token_urlsafe(16)
    env = {} if own else {"REFMESH_PASSPHRASE": passphrase,
                          "REFMESH_PARTITION_SECRET": secrets.token_hex(16),
                          "REFMESH_PSEUDONYM_SECRET": secrets.token_hex(32)}
    if own:
        for agency in agencies:
            names = own_secret_envs(agency)
            env[names["passphrase_env"]] = secrets.token_urlsafe(16)
            if "partition_secret_env" in names:
                env.setdefault(names["partition_secret_env"], secrets.token_hex(16))
            if "pseudonym_secret_env" in names:
                env[names["pseudonym_secret_env"]] = secrets.token_hex(32)
    domain_keys = {}
    coordinator_keys = None
    coordinator = agencies[0].agency_id
    draft = directory.empty(coordinator)
    for agency in agencies:
        k = keys.generate(agency.agency_id, now)
        lock_with = env[own_secret_envs(agency)["passphrase_env"]] if own else passphrase
        write_file(keystore_path(root / "keys", agency.agency_id),
                   keys.lock(k, lock_with, os.urandom(16), os.urandom(12), n=scrypt_n))
        draft = directory.add_member(draft, directory.member_entry(
            k, agency.name, agency.role, agency.country, agency.domain, now))
        if agency.agency_id == coordinator:
            coordinator_keys = k
        if agency.domain is None:
            domain_keys[agency.agency_id] = (k, agency.country)
    files = MeshFiles(root, root / "keys", public / "directory.bin", public / "anchor.json",
                      env)
    # the signed directory is public: readable by the containers' user (docker-compose.yml)
    write_file(files.directory, directory.sign(draft, coordinator_keys, now),
               mode=0o644 if own else 0o600)
    files.anchor.write_text(json.dumps(directory.TrustAnchor.of(coordinator_keys).to_json()))
    (public / "policies").mkdir(exist_ok=True)
    for domain_id, (k, country) in domain_keys.items():
        write_file(public / "policies" / f"{domain_id.replace('/', '_')}.signed",
                   sample_policy(domain_id, country, k, now), mode=0o644)
    seen = Path(mount) if mount else root  # where the folder is for the processes
    seen_public = seen / "pub" if own else seen
    common = {"keystore": str(seen / "keys"), "directory": str(seen_public / "directory.bin"),
              "anchor": str(seen_public / "anchor.json"), "bootstrap": bootstrap,
              "broker": broker}
    if partitions is not None:
        common["partitions"] = partitions
    port = first_port
    for agency in agencies:
        if mount is not None:
            port = 8080  # each gateway has its own container (docker-compose.yml)
        elif first_port is None:
            port = free_port()
        safe = agency.agency_id.replace("/", "_")
        principal = (access.domain_principal if agency.domain is None
                     else access.agency_principal)(agency.agency_id)
        security, secret_env = credentials(principal) if credentials else ({}, {})
        env.update(secret_env)
        own_envs = own_secret_envs(agency) if own else {}
        if agency.domain is None:
            _yaml(files.agents_config(agency.agency_id), {
                **common, **own_envs, "security": security, "domain": agency.agency_id,
                "data_dir": str(seen / "agents" / safe),
                "policy": str(seen_public / "policies" / f"{safe}.signed"),
                # /healthz (faust's web server); each domain has its own container under mount
                "web_port": AGENTS_WEB_PORT if mount else free_port()})
        else:
            env[token_env(agency.agency_id)] = secrets.token_urlsafe(24)
            _yaml(files.gateway_config(agency.agency_id), {
                **common, **own_envs, "security": security, "agency": agency.agency_id,
                "database": str(seen / "state" / f"{safe}.db"),
                "http_port": port, "api_token_env": token_env(agency.agency_id),
                "http_host": "0.0.0.0" if mount else "127.0.0.1",
                "policy": str(seen_public / "policies" /
                              f"{agency.domain.replace('/', '_')}.signed"),
                "resend_after_ms": resend_after_ms})
            port += 1
    return files


def sample_policy(domain_id: str, country: str, domain_keys: keys.AgencyKeys, now: int) -> bytes:
    """The sample policy of the domain's country, for ``domain_id``, signed by the domain."""
    text = POLICIES[country].read_text()
    sample_domain = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                         if line.startswith("domain:"))
    text = text.replace(f"domain: {sample_domain}", f"domain: {domain_id}", 1)
    return signed_policy.sign(text.encode(), domain_keys, now)


def _yaml(path: Path, doc: dict) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
