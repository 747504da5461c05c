"""One settings object per process, built once, frozen, validated when built.

Settings come from a YAML file (read at the edge) as a mapping; unknown keys are rejected by
name (as confluent-kafka does: "Unrecognized properties"), wrong types name the key and the
type wanted. Secrets never sit in the file: it names the environment variables that hold them.
Broker-specific client settings live in one profile per broker kind (kafkaedge/profiles.py), chosen
here by ``broker``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from refmesh.aggregate.job import MAX_OPEN_WINDOWS, check_schedule, open_windows
from refmesh.aggregate.privacy import MECHANISMS, Noise, calibrate, sensitivity
from refmesh.aggregate.rule import check_rule
from refmesh.aggregate.windows import window_of
from refmesh.directory import check_agency_id
from refmesh.errors import ConfigError
from refmesh.permissions import check_team

BROKER_KINDS = ("embedded", "apache")


def build(cls, mapping: dict, source: str = "settings"):
    """Build the frozen settings dataclass ``cls`` from ``mapping``; raise ConfigError naming
    ``source`` and the key on any problem."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unrecognised setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: setting {name!r} is required")
            continue
        values[name] = _check(name, mapping[name], hints[name], source)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _check(name: str, value, hint, source: str):
    wanted = tuple(a for a in typing.get_args(hint) if a is not type(None)) or (hint,)
    base = tuple(typing.get_origin(w) or w for w in wanted)
    if value is None and type(None) in typing.get_args(hint):
        return None
    if bool not in base and isinstance(value, bool) or not isinstance(value, base):
        names = " or ".join(getattr(b, "__name__", str(b)) for b in base)
        raise ConfigError(f"{source}: setting {name!r} must be {names}, got {value!r}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    """Only how to reach the brokers: an operator's or a regional reader's ``--config`` file
    (``refmesh broker --kind apache`` writes one for its super user)."""

    bootstrap: str = "127.0.0.1:9092"
    broker: str = "apache"
    security: dict = field(default_factory=dict)  # TLS/SASL options passed to the clients

    def __post_init__(self) -> None:
        if self.broker not in BROKER_KINDS:
            raise ValueError(f"broker must be one of {', '.join(BROKER_KINDS)}, not {self.broker!r}")


@dataclass(frozen=True)
class Common:
    """Settings every refmesh process shares."""

    keystore: str  # folder holding <AGENCY>.keystore
    directory: str  # signed directory file
    anchor: str  # trust anchor JSON (the coordinator's public key)
    bootstrap: str = "127.0.0.1:9092"
    broker: str = "apache"  # client profile: embedded (the Tansu test broker) or apache
    security: dict = field(default_factory=dict)  # TLS/SASL options passed to the clients
    passphrase_env: str = "REFMESH_PASSPHRASE"  # env var holding the keystore passphrase
    partition_secret_env: str = "REFMESH_PARTITION_SECRET"  # env var: domain's keyed-hash secret
    partitions: int = 4  # partitions of every mesh topic (Tansu auto-creates 4)

    def __post_init__(self) -> None:
        if self.broker not in BROKER_KINDS:
            raise ValueError(f"broker must be one of {', '.join(BROKER_KINDS)}, not {self.broker!r}")
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")


@dataclass(frozen=True)
class GatewaySettings(Common):
    """An agency gateway (``refmesh gateway run``)."""

    agency: str = ""
    database: str = "gateway.db"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    api_token_env: str = "REFMESH_API_TOKEN"  # env var holding the agency's API token
    resend_after_ms: int = 5000  # first re-send of an unconfirmed event
    max_resend_after_ms: int = 60000  # backoff ceiling
    poll_interval_ms: int = 200  # relay tick
    policy: str = ""  # the domain's signed policy, for the web page's send preview ("" = none)
    web: bool = True  # serve the case workers' web page (gateways/web) beside the API
    web_session_idle_minutes: int = 30  # a web session ends after this long unused
    web_session_max_hours: int = 10  # and after this long in any case
    # HTTPS: the gateway serves TLS itself with this PEM certificate chain and its unencrypted
    # PEM private key (mode 0600); "" = plain HTTP
    tls_cert: str = ""
    tls_key: str = ""
    # a TLS proxy in front is the only way in: Secure cookies and HSTS without tls_cert (no
    # X-Forwarded-Proto is read: a header does not decide it)
    behind_tls_proxy: bool = False
    web_timezone: str = "UTC"  # IANA zone the web page shows times in, e.g. Asia/Bahrain
    # received referrals nobody assigned belong to this team ("" : to nobody until a
    # supervisor assigns them; refmesh.permissions)
    web_default_team: str = "intake"
    # sign-in attempts per minute from one client address, and from all (in memory)
    web_signin_per_address: int = 10
    web_signin_overall: int = 100
    # the most event ids the replay memory holds (gateways/store.py), each for 30 days: the
    # default is a steady 66,000 accepted events a day, about 600 MB of the database
    replay_memory_max: int = 2_000_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_agency_id(self.agency)
        if self.web_session_idle_minutes < 1 or self.web_session_max_hours < 1:
            raise ValueError("web_session_idle_minutes and web_session_max_hours must be >= 1")
        if self.web_signin_per_address < 1 or self.web_signin_overall < 1:
            raise ValueError("web_signin_per_address and web_signin_overall must be >= 1")
        check_team(self.web_default_team)  # "" is allowed: nobody's until assigned
        if not 0 <= self.http_port < 65536:
            raise ValueError(f"http_port {self.http_port} is not a TCP port")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both (the PEM certificate "
                             "chain and its private key) to serve HTTPS, or neither")
        if self.resend_after_ms < 1 or self.max_resend_after_ms < self.resend_after_ms:
            raise ValueError("resend_after_ms must be >= 1 and <= max_resend_after_ms")
        if self.replay_memory_max < 1000:
            raise ValueError("replay_memory_max must be >= 1000 (event ids remembered for the "
                             "envelopes' maximum age, 30 days)")

    @property
    def served_over_tls(self) -> bool:
        """Browsers reach the gateway over HTTPS, its own (tls_cert) or a proxy's
        (behind_tls_proxy): cookies are then Secure, and every answer carries HSTS."""
        return bool(self.tls_cert) or self.behind_tls_proxy


@dataclass(frozen=True)
class AgentSettings(Common):
    """A policy domain's stream agents (``refmesh agents run``)."""

    domain: str = ""
    policy: str = ""  # the domain's signed minimisation policy (refmesh policy sign)
    pseudonym_secret_env: str = "REFMESH_PSEUDONYM_SECRET"  # env var: pseudonymisation secret
    data_dir: str = "agents-data"
    region: str = ""  # the region whose aggregate topic gets this domain's statistics; "" = none
    aggregate_unit: str = "month"  # tumbling window: month, day, hour or minute
    aggregate_grace_ms: int = 2 * 86_400_000  # a window is released this long after it closes
    aggregate_dims: list = field(default_factory=lambda: [
        "reportingCountry", "citizenship", "gender", "exploitationType", "finalStatus"])
    aggregate_k: int = 11  # no released cell counts fewer referrals (CTDC: k = 11)
    aggregate_resolution: int = 5  # counts are rounded down to a multiple of this
    release_interval_s: int = 60  # how often due windows are checked
    aggregate_max_late_ms: int = 30 * 86_400_000  # later events count in the oldest open window
    # corrections per window after the first release, evenly until the window is final
    aggregate_revisions: int = 1
    # m: decisions, responses and ends counted per person and window (each at most m); the
    # noise's sensitivity follows from it: L1 = 3m, L2 = sqrt(3) m (refmesh.aggregate.privacy)
    aggregate_max_referrals_per_person: int = 2
    # Differential privacy (off unless aggregate_epsilon is set): epsilon and delta of each
    # release, and the totals the region's readers may receive from this domain (the ledger,
    # basic composition). aggregate_delta_budget defaults to as many releases' delta as
    # aggregate_budget allows of epsilon.
    aggregate_epsilon: float | int | None = None
    aggregate_delta: float | None = None  # e.g. 1e-6; required with aggregate_epsilon
    aggregate_budget: float | int | None = None
    aggregate_delta_budget: float | int | None = None
    aggregate_noise: str = "laplace"  # laplace or gaussian (discrete, exact samplers)
    web_port: int = 0  # faust's web server; 0 = off
    worker_id: str = "1"
    # a signed checkpoint of each audit chain's head every this many records, or this many
    # seconds after the last one when records were added (refmesh.audit.checkpoint_due)
    audit_checkpoint_every: int = 100
    audit_checkpoint_s: int = 60

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.audit_checkpoint_every < 1 or self.audit_checkpoint_s < 1:
            raise ValueError("audit_checkpoint_every and audit_checkpoint_s must be >= 1")
        if not self.domain:
            raise ValueError("setting 'domain' is required: the policy domain's agency id, "
                             "e.g. BH/GOV/NCCTIP")
        check_agency_id(self.domain)
        if not self.policy:
            raise ValueError("setting 'policy' is required: the path of the domain's signed "
                             "policy (refmesh policy sign)")
        if self.aggregate_max_late_ms < 0 or self.release_interval_s < 1:
            raise ValueError("aggregate_max_late_ms must be >= 0 and release_interval_s >= 1")
        check_rule(self.aggregate_k, self.aggregate_resolution)
        sensitivity(self.aggregate_max_referrals_per_person)
        check_schedule(self.aggregate_grace_ms, self.aggregate_max_late_ms,
                       self.aggregate_revisions)
        window_of(0, self.aggregate_unit)  # names a wrong unit
        if open_windows(self.aggregate_unit, self.aggregate_max_late_ms) > MAX_OPEN_WINDOWS:
            raise ValueError(f"aggregate_max_late_ms {self.aggregate_max_late_ms} keeps more "
                             f"than {MAX_OPEN_WINDOWS} {self.aggregate_unit} windows open, each "
                             "released on schedule: use a longer aggregate_unit or a shorter "
                             "aggregate_max_late_ms")
        noise = self.aggregate_privacy()
        if noise is not None:
            if self.aggregate_budget is None or not (
                    self.aggregate_budget >= self.aggregate_epsilon):
                raise ValueError("aggregate_epsilon needs aggregate_budget (the epsilon the "
                                 "region may receive in total), at least aggregate_epsilon")
            if self.delta_budget() < noise.delta:
                raise ValueError("aggregate_delta_budget must be at least one release's delta")
        elif self.aggregate_noise not in MECHANISMS:
            raise ValueError(f"noise mechanism {self.aggregate_noise!r} is not one of "
                             f"{', '.join(MECHANISMS)}")

    def aggregate_privacy(self) -> Noise | None:
        """The calibrated noise of one release (None without aggregate_epsilon): scale,
        threshold and delta from the rule (refmesh.aggregate.privacy.calibrate)."""
        if self.aggregate_epsilon is None:
            return None
        if self.aggregate_delta is None:
            raise ConfigError("aggregate_epsilon needs aggregate_delta (each release's delta, "
                              "e.g. 1e-6): it pays for the noisy threshold, and for the "
                              "Gaussian mechanism's conversion")
        return calibrate(epsilon=self.aggregate_epsilon, delta=self.aggregate_delta,
                         mechanism=self.aggregate_noise, k=self.aggregate_k,
                         resolution=self.aggregate_resolution,
                         max_per_person=self.aggregate_max_referrals_per_person)

    def delta_budget(self) -> float | None:
        """The region's delta budget: aggregate_delta_budget, or by default as many releases'
        aggregate_delta as aggregate_budget allows of aggregate_epsilon."""
        if self.aggregate_delta_budget is not None:
            return self.aggregate_delta_budget
        if self.aggregate_epsilon is None or self.aggregate_budget is None:
            return None
        return self.aggregate_budget / self.aggregate_epsilon * self.aggregate_delta
