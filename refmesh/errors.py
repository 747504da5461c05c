"""One error root for refmesh, and one class per boundary.

Every message names the input that was wrong and what to do about it. Library errors are
translated with ``raise ... from exc`` so the cause stays visible to operators, never to peers.
"""
from __future__ import annotations

import traceback


class MeshError(Exception):
    """Root of every error refmesh raises on purpose."""


def failure(exc: BaseException) -> str:
    """An unexpected exception for a log line: its type and the place it was raised, never its
    message or a traceback's, which may quote a record's values (a consent id, a name)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    return f"{type(exc).__name__} at {frames[-1].filename}:{frames[-1].lineno}"


class ConfigError(MeshError, ValueError):
    """A setting, file or command-line input is wrong; the message says which and how to fix it."""


class RecordError(MeshError, ValueError):
    """A value does not fit its Avro contract; ``path`` names the field (e.g. person.gender)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class FieldValueError(RecordError):
    """A value of the right Avro type that is not what its field means: a date field (documented
    ``YYYY-MM-DD``) holding no date of the calendar. The gateway's API answers 422 naming the
    field, where a RecordError (the value does not fit the contract) is a 400."""


class CodecError(MeshError, ValueError):
    """Bytes could not be decoded, or a value could not be encoded. Nothing is half-decoded."""


class BadMarkerError(CodecError):
    """The bytes do not start with the Avro single-object marker C3 01."""


class UnknownFingerprintError(CodecError):
    """The writer-schema fingerprint is not one refmesh knows."""


class TruncatedError(CodecError):
    """The bytes end before the record does."""


class TrailingBytesError(CodecError):
    """Bytes remain after the record ends."""


class MalformedBodyError(CodecError):
    """The body does not decode as its writer schema (bad lengths, bad UTF-8, bad enum index...)."""


class SchemaMismatchError(CodecError):
    """A value does not match the schema, or the writer's schema cannot be read as the reader's."""


class SealError(MeshError):
    """An envelope could not be sealed or opened.

    Callers see this one type whatever went wrong (like Fernet's InvalidToken), so a peer learns
    nothing from the error; ``reason`` is the precise code for the audit log and metrics.
    """

    REASONS = (
        "malformed", "wrong_recipient", "unknown_sender", "unknown_key", "revoked_key",
        "bad_signature", "decrypt_failed", "too_old", "from_future", "inner_mismatch",
        "unsupported_suite", "suite_downgrade",
    )

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__("envelope rejected")


class KeystoreError(MeshError):
    """An agency keystore could not be created or unlocked."""


class DirectoryError(MeshError):
    """The agency directory is unsigned, tampered, expired, or does not know an agency or key.

    ``reason`` is a short code (unknown_agency, unknown_key, revoked_key, expired_key,
    bad_signature, expired, stale, malformed) that envelope opening maps to its own reasons.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        self.reason = reason
        super().__init__(message)


class PolicyError(MeshError, ValueError):
    """A minimisation policy is invalid, unsigned, tampered, or signed by the wrong key.

    The message names the file, the line (when known) and the key, e.g. ``policy.yaml line 14:
    rules[2].fields: unknown field person.birthdat``. ``reason`` is a short code for logs:
    invalid (the policy's content), or for a signed policy unsigned, malformed, bad_signature,
    wrong_domain, unknown_key, revoked_key, expired_key.
    """

    def __init__(self, problem: str, *, source: str = "policy", path: str = "",
                 line: int | None = None, reason: str = "invalid") -> None:
        self.source, self.path, self.line, self.problem = source, path, line, problem
        self.reason = reason
        where = f"{source} line {line}" if line else source
        super().__init__(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")


class AggregateError(MeshError, ValueError):
    """A statistics release (``Aggregate``) or the aggregation state cannot be trusted or read.

    ``reason`` is a short code for logs and for the regional body's warnings: malformed,
    not_a_domain, wrong_signer (the key is not one of the named domain's keys), unknown_agency,
    revoked_key, expired_key, bad_signature.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        self.reason = reason
        super().__init__(message)
