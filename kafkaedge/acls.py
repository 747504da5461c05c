"""Give the brokers the mesh's ACLs and SCRAM users: carry out what refmesh.access decided.

``apply_acls`` makes the brokers' ALLOW ACLs on the mesh's resources (names starting with
``refmesh.`` or ``refmesh-``) equal to the grants it is given: it creates the missing ones and,
unless told not to (``prune=False``, for brokers that several meshes share, as in tests),
removes the ones no longer granted, so that a member removed from the directory, or whose keys
are all revoked, loses its rights. Running it again changes nothing. ACLs on other resources,
DENY ACLs and the super users (``super.users``) are left alone.

``scram_users`` creates or updates SCRAM-SHA-512 users (Kafka 3+: AlterUserScramCredentials).

Both must run as the operator's super user (refmesh.access.ADMIN) against brokers with an
authorizer; each failure is one ``AclError`` naming the brokers and what to do.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    SecurityDisabledError,
    UnsupportedVersionError,
)

from kafkaedge.credentials import admin_client
from kafkaedge.waiting import ProcessError, wait_until
from refmesh.access import ADMIN, Grant
from refmesh.errors import MeshError

#: Resources whose ALLOW ACLs this module owns (topology.PREFIX, the faust group prefix).
OWNED_PREFIXES = ("refmesh.", "refmesh-")
ANY_HOST = "*"
#: The resource types a Grant can name, and the only ones pruned.
OWNED_TYPES = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)


class AclError(MeshError, RuntimeError):
    """The brokers' ACLs or SCRAM users could not be read or changed."""


# --- the pure part: Grant <-> kafka-python ACL ----------------------------------------------

def to_acl(grant: Grant) -> ACL:
    """The kafka-python ACL that carries out ``grant``: ALLOW, from any host, for
    ``User:<principal>``."""
    return ACL(principal=f"User:{grant.principal}", host=ANY_HOST,
               operation=ACLOperation[grant.operation],
               permission_type=ACLPermissionType.ALLOW,
               resource_pattern=ResourcePattern(ResourceType[grant.resource_type], grant.name,
                                                ACLResourcePatternType[grant.pattern]))


def acl_key(acl: ACL) -> tuple:
    """A sortable identity of an ACL (kafka-python's ACL objects compare but do not sort)."""
    pattern = acl.resource_pattern
    return (acl.principal, acl.host, int(acl.operation), int(acl.permission_type),
            int(pattern.resource_type), pattern.resource_name, int(pattern.pattern_type))


def owned(acl: ACL) -> bool:
    """Whether ``acl`` is one ``apply_acls`` manages (and so may remove): an ALLOW ACL on a
    topic, group or transactional id whose name or prefix starts with refmesh. or refmesh-."""
    pattern = acl.resource_pattern
    return (acl.permission_type == ACLPermissionType.ALLOW
            and pattern.resource_type in OWNED_TYPES
            and str(pattern.resource_name).startswith(OWNED_PREFIXES))


def plan(grants: Iterable[Grant], present: Iterable[ACL], prune: bool = True
         ) -> tuple[list[ACL], list[ACL]]:
    """(ACLs to create, ACLs to remove) to make the brokers' owned ACLs equal ``grants``."""
    wanted = {acl_key(acl): acl for acl in map(to_acl, grants)}
    have = {acl_key(acl): acl for acl in present}
    create = [wanted[key] for key in sorted(wanted.keys() - have.keys())]
    remove = [have[key] for key in sorted(have.keys() - wanted.keys())
              if owned(have[key])] if prune else []
    return create, remove


# --- the broker -----------------------------------------------------------------------------

def apply_acls(admin_config: dict, grants: Iterable[Grant], *, prune: bool = True
               ) -> tuple[list[ACL], list[ACL]]:
    """Create the ALLOW ACLs of ``grants`` that the brokers lack and, with ``prune``, remove
    the owned ALLOW ACLs (``owned``) that ``grants`` no longer holds; return (created,
    removed). Idempotent. ``admin_config`` must authenticate a super user (ADMIN)."""
    admin = _connect(admin_config)
    try:
        create, remove = plan(grants, _describe(admin, admin_config), prune)
        if create:
            _create(admin, admin_config, create)
        if remove:
            _delete(admin, admin_config, remove)
        if create or remove:
            _wait_in_force(admin, admin_config, create, remove)
    finally:
        admin.close()
    return create, remove


def _wait_in_force(admin: KafkaAdminClient, config: dict, create: list[ACL], remove: list[ACL],
                   timeout: float = 30.0) -> None:
    """Wait until the brokers' authorizer shows the change. The controller commits ACLs to the
    metadata log and each broker applies them when it replays it: a client started right after
    CreateAcls returned could otherwise still be refused."""
    added, gone = {acl_key(a) for a in create}, {acl_key(a) for a in remove}

    def in_force() -> bool:
        have = {acl_key(acl) for acl in _describe(admin, config)}
        return added <= have and not gone & have

    try:
        wait_until(in_force, timeout, f"the ACL change to take effect at {_where(config)}")
    except ProcessError as exc:
        raise AclError(str(exc)) from None


def scram_users(admin_config: dict, users: Mapping[str, str]) -> list[str]:
    """Create, or set a new password for, each SCRAM-SHA-512 user of ``users`` (name ->
    password); return the names. ``admin_config`` must authenticate a super user."""
    for name, password in users.items():
        if not name or not isinstance(password, str) or not password:
            raise AclError(f"SCRAM user {name!r}: give a non-empty user name and password")
    if not users:
        return []
    admin = _connect(admin_config)
    try:
        result = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(name, ScramMechanism.SCRAM_SHA_512, password)
            for name, password in sorted(users.items())])
    except KafkaError as exc:
        raise _explain(exc, admin_config, "set SCRAM users") from exc
    finally:
        admin.close()
    failed = {name: error for name, error in result.items() if error}
    if failed:
        raise AclError(f"the brokers at {_where(admin_config)} refused SCRAM credentials for "
                       f"{failed}; check the user names, and that this runs as {ADMIN!r}")
    return sorted(users)


def _where(config: dict) -> str:
    return str(config.get("bootstrap_servers"))


def _connect(config: dict) -> KafkaAdminClient:
    try:
        return admin_client(config)  # a refused login is already a CredentialsError
    except KafkaError as exc:
        raise AclError(f"cannot reach the brokers at {_where(config)} ({type(exc).__name__}): "
                       "check the bootstrap address, that the brokers run, and the security "
                       "settings") from exc


def _explain(exc: KafkaError, config: dict, doing: str, detail: str = "") -> AclError:
    """One clear error for a broker's refusal to ``doing`` (``detail``: which items)."""
    error = _explain_plain(exc, config, doing)
    return AclError(f"{error} ({detail})") if detail else error


def _explain_plain(exc: KafkaError, config: dict, doing: str) -> AclError:
    where, user = _where(config), config.get("sasl_plain_username", "(no SASL user)")
    if isinstance(exc, SecurityDisabledError):
        return AclError(
            f"the brokers at {where} have no authorizer, so they cannot {doing} "
            "(SecurityDisabledError): set authorizer.class.name=org.apache.kafka.metadata."
            f"authorizer.StandardAuthorizer and super.users=User:{ADMIN} (refmesh broker --kind "
            "apache does); the embedded broker has no ACLs at all")
    if isinstance(exc, AuthorizationError):
        return AclError(
            f"the brokers at {where} do not let {user!r} {doing} ({type(exc).__name__}): run "
            f"this with the credentials of the super user {ADMIN!r} (listed in the brokers' "
            "super.users), e.g. --config client.yaml as written by refmesh broker")
    if isinstance(exc, UnsupportedVersionError):
        return AclError(
            f"the brokers at {where} cannot {doing} ({type(exc).__name__}): ACLs and SCRAM "
            "users need Apache Kafka 3 or later with an authorizer; the embedded broker has "
            "neither")
    return AclError(f"could not {doing} on the brokers at {where}: {exc!r}; check that they "
                    "are reachable and retry")


def _describe(admin: KafkaAdminClient, config: dict) -> list[ACL]:
    everything = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                           permission_type=ACLPermissionType.ALLOW,
                           resource_pattern=ResourcePatternFilter(
                               ResourceType.ANY, None, ACLResourcePatternType.ANY))
    try:
        acls, _ = admin.describe_acls(everything)
    except KafkaError as exc:
        raise _explain(exc, config, "describe ACLs") from exc
    return acls


def _create(admin: KafkaAdminClient, config: dict, acls: list[ACL]) -> None:
    try:
        result = admin.create_acls(acls)
    except KafkaError as exc:
        raise _explain(exc, config, "create ACLs") from exc
    done = {acl_key(acl) for acl in result["succeeded"]}
    failed = [acl for acl in acls if acl_key(acl) not in done]  # in request order, as errors
    if failed:
        error = result["failed"][0] if result["failed"] else KafkaError
        raise _explain(error(), config, "create ACLs",
                       f"{len(failed)} of {len(acls)} refused, the first {failed[0]!r}")


def _delete(admin: KafkaAdminClient, config: dict, acls: list[ACL]) -> None:
    filters = [ACLFilter(acl.principal, acl.host, acl.operation, acl.permission_type,
                         acl.resource_pattern) for acl in acls]
    try:
        results = admin.delete_acls(filters)
    except KafkaError as exc:
        raise _explain(exc, config, "delete ACLs") from exc
    for acl_filter, _, error in results:
        if error is not None and error.errno != 0:
            raise _explain(error(), config, "delete ACLs", f"refused: {acl_filter!r}")
