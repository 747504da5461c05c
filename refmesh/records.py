"""Records as frozen dataclasses, generated from the Avro contracts so the schema stays the one
source of truth.

``Referral.from_dict(d)`` checks ``d`` strictly against the contract (unknown fields, missing
fields, wrong types, enum symbols, int ranges) and raises ``RecordError`` naming the dotted path
of the first wrong field. ``to_dict()`` gives the plain dict that ``codec.encode`` writes.
Arrays become tuples so that records stay immutable.

The contract is what the wire carries: a date is an Avro string. What a field means is checked
where a record enters the mesh (``intake``: the gateway's API and web page, the CLI's files) and
where the policy domain decides (``refmesh.decide``): a string field documented as an ISO 8601
date (``YYYY-MM-DD``) must hold a date of the calendar (``check_dates``, ``FieldValueError``).
Decoding does not check it, so that what an older gateway stored stays readable.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import re

from refmesh import schemas
from refmesh.errors import FieldValueError, RecordError

_INT = (-(2**31), 2**31 - 1)
_LONG = (-(2**63), 2**63 - 1)


class Record:
    """Base of every generated record class."""

    schema_name: str = ""

    @classmethod
    def from_dict(cls, value: Any) -> "Record":
        return _convert(cls._avro, value, cls.schema_name, {})

    @classmethod
    def from_json(cls, value: Any) -> "Record":
        """Like ``from_dict`` for parsed JSON, where bytes are written as hex strings."""
        return _convert(cls._avro, value, cls.schema_name, {_JSON: True})

    def to_dict(self) -> dict:
        return _plain(self, False)

    def to_json(self) -> dict:
        """A JSON-ready dict: bytes as hex strings."""
        return _plain(self, True)


_JSON = "\0json"  # marker key in the named-types map: bytes arrive as hex strings


def _plain(value: Any, js: bool) -> Any:
    if isinstance(value, Record):
        return {f.name: _plain(getattr(value, f.name), js) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v, js) for v in value]
    if js and isinstance(value, bytes):
        return value.hex()
    return value


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t.rsplit(".", 1)[-1]
    if isinstance(t, list):
        return " or ".join(_type_name(x) for x in t)
    return t.get("name") or t["type"]


def _convert(t: Any, value: Any, path: str, named: dict) -> Any:
    if isinstance(t, str):
        if t in named:
            return _convert(named[t], value, path, named)
        return _primitive(t, _unhex(t, value, path, named), path)
    if isinstance(t, list):
        return _union(t, value, path, named)
    kind = t["type"]
    if "name" in t:
        named.setdefault(t["name"], t)
        named.setdefault(f"{t.get('namespace', schemas.NAMESPACE)}.{t['name']}", t)
    if kind == "record":
        return _record(t, value, path, named)
    if kind == "enum":
        if value not in t["symbols"]:
            raise RecordError(path, f"{_shown(value)} is not one of {', '.join(t['symbols'])}")
        return value
    if kind == "array":
        if not isinstance(value, (list, tuple)):
            raise RecordError(path, f"expected a list, got {type(value).__name__}")
        return tuple(_convert(t["items"], v, f"{path}[{i}]", named) for i, v in enumerate(value))
    if kind == "fixed":
        value = _unhex("bytes", value, path, named)
        if not isinstance(value, bytes) or len(value) != t["size"]:
            raise RecordError(path, f"expected {t['size']} bytes")
        return value
    return _primitive(kind, _unhex(kind, value, path, named), path)


def _unhex(kind: str, value: Any, path: str, named: dict) -> Any:
    if kind != "bytes" or not named.get(_JSON) or not isinstance(value, str):
        return value
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RecordError(path, "expected hex-encoded bytes") from None


def _union(branches: list, value: Any, path: str, named: dict) -> Any:
    if value is None:
        if "null" in branches:
            return None
        raise RecordError(path, "is required (null is not allowed)")
    errors = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _convert(branch, value, path, named)
        except RecordError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise RecordError(path, f"does not match any of {_type_name(branches)}")


def _record(t: dict, value: Any, path: str, named: dict) -> Record:
    cls = _CLASSES[t["name"]]
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise RecordError(path, f"expected an object ({t['name']}), got {type(value).__name__}")
    names = [f["name"] for f in t["fields"]]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise RecordError(
            f"{path}.{unknown[0]}", f"unknown field; {t['name']} has: {', '.join(names)}"
        )
    kwargs = {}
    for f in t["fields"]:
        where = f"{path}.{f['name']}"
        if f["name"] in value:
            kwargs[f["name"]] = _convert(f["type"], value[f["name"]], where, named)
        elif "default" in f:
            kwargs[f["name"]] = _convert(f["type"], f["default"], where, named)
        else:
            raise RecordError(where, "is required")
    return cls(**kwargs)


def is_text(value: str) -> bool:
    """Whether a str is Unicode text an Avro string can hold: Python strs may carry lone
    surrogates (from JSON's \\ud800 escapes, or surrogateescape decoding) that UTF-8 refuses."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A short, safe rendering of a wrong value for an error message: short strings and numbers
    as themselves, anything else by its type. Never ``repr`` a container: a list nested a
    thousand deep (valid JSON) makes ``repr`` raise RecursionError, and a huge value would be
    echoed back whole."""
    if value is None or isinstance(value, (bool, float)) or (
            isinstance(value, int) and -10**18 < value < 10**18):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 50 else f"{value[:40]!r}... ({len(value)} characters)"
    return type(value).__name__


def _primitive(kind: str, value: Any, path: str) -> Any:
    ok = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool) and _INT[0] <= value <= _INT[1],
        "long": isinstance(value, int) and not isinstance(value, bool)
        and _LONG[0] <= value <= _LONG[1],
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "double": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "bytes": isinstance(value, bytes),
    }.get(kind)
    if ok is None:
        raise RecordError(path, f"unsupported Avro type {kind}")
    if ok and kind == "string" and not is_text(value):
        raise RecordError(path, "is not valid Unicode text: it holds a lone UTF-16 surrogate "
                                "(such as the JSON escape \\ud800), which UTF-8 cannot encode")
    if not ok:
        raise RecordError(path, f"expected {kind}, got {_shown(value)}")
    return value


_CLASSES: dict[str, type] = {}


def _build(t: Any) -> None:
    """Create one frozen dataclass per named record in ``t`` (depth first)."""
    if isinstance(t, list):
        for branch in t:
            _build(branch)
        return
    if not isinstance(t, dict):
        return
    if t["type"] == "array":
        _build(t["items"])
    if t["type"] != "record" or t["name"] in _CLASSES:
        return
    for f in t["fields"]:
        _build(f["type"])
    cls = dataclasses.make_dataclass(
        t["name"], [(f["name"], Any) for f in t["fields"]], bases=(Record,), frozen=True,
        namespace={"schema_name": t["name"], "_avro": t, "__doc__": t.get("doc", "")},
    )
    cls.__module__ = __name__
    _CLASSES[t["name"]] = cls


for _contract in schemas.CURRENT.values():
    _build(_contract.raw)


def _compile(t: Any, named: dict):
    """A fast yes/no check for values of Avro type ``t`` (no error paths: on "no", callers run
    the slower ``from_dict`` to say exactly what is wrong)."""
    if isinstance(t, str):
        if t in named:
            return lambda v, t=t: named[t](v)
        lo, hi = _INT if t == "int" else _LONG
        return {
            "null": lambda v: v is None,
            "boolean": lambda v: type(v) is bool,
            "int": lambda v: type(v) is int and lo <= v <= hi,
            "long": lambda v: type(v) is int and lo <= v <= hi,
            "float": lambda v: type(v) in (int, float),
            "double": lambda v: type(v) in (int, float),
            "string": lambda v: type(v) is str and (v.isascii() or is_text(v)),
            "bytes": lambda v: type(v) is bytes,
        }[t]
    if isinstance(t, list):
        checks = [_compile(b, named) for b in t]
        if len(t) == 2 and t[0] == "null":
            other = checks[1]
            return lambda v: v is None or other(v)
        return lambda v: any(c(v) for c in checks)
    kind = t["type"]
    if kind == "enum":
        symbols = frozenset(t["symbols"])
        check = lambda v: type(v) is str and v in symbols  # noqa: E731
    elif kind == "array":
        item = _compile(t["items"], named)
        check = lambda v: type(v) in (list, tuple) and all(item(x) for x in v)  # noqa: E731
    elif kind == "fixed":
        size = t["size"]
        check = lambda v: type(v) is bytes and len(v) == size  # noqa: E731
    elif kind == "record":
        named[t["name"]] = named[f"{t.get('namespace', schemas.NAMESPACE)}.{t['name']}"] = \
            lambda v: check(v)
        fields = [(f["name"], _compile(f["type"], named), "default" in f) for f in t["fields"]]
        names = frozenset(f[0] for f in fields)

        def check(v):
            if type(v) is not dict or not v.keys() <= names:
                return False
            for name, ok, optional in fields:
                if name in v:
                    if not ok(v[name]):
                        return False
                elif not optional:
                    return False
            return True
    else:
        return _compile(kind, named)
    if "name" in t:
        named[t["name"]] = check
    return check


_CHECKS = {name: _compile(c.raw, {}) for name, c in schemas.CURRENT.items()}


def check(name: str, value: Any) -> None:
    """Raise RecordError (naming the field) unless ``value`` is a valid ``name`` record dict.

    Fast when the value is valid; the precise error comes from the slower ``from_dict``.
    """
    fast = _CHECKS.get(name) or _CHECKS[schemas.contract(name).name]
    if not fast(value):
        from_dict(name, value)
        raise RecordError(name, "does not match its contract")  # from_dict found no reason


def record_class(name: str) -> type:
    """The generated class for a record type (top-level or nested), e.g. "Person"."""
    return _CLASSES[name]


def from_dict(name: str, value: Any) -> Record:
    """Check ``value`` against the current contract ``name`` and build its record."""
    schemas.contract(name)
    return record_class(name).from_dict(value)


Referral = record_class("Referral")
Consent = record_class("Consent")
ReferralStatus = record_class("ReferralStatus")
ErasureNotice = record_class("ErasureNotice")
AuditRecord = record_class("AuditRecord")
Aggregate = record_class("Aggregate")
Envelope = record_class("Envelope")
EnvelopeHeader = record_class("EnvelopeHeader")
Directory = record_class("Directory")
SignedDirectory = record_class("SignedDirectory")
Member = record_class("Member")
Receipt = record_class("Receipt")
Person = record_class("Person")


# --- what fields mean ---------------------------------------------------------------------------

#: how a contract documents a date held in a string
DATE_DOC = "YYYY-MM-DD"
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def is_date(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 calendar date written YYYY-MM-DD (2024-02-29 yes,
    2023-02-29, 2024-2-9, 20240229 and 2024-02-29T00:00 no)."""
    m = _ISO_DATE.fullmatch(text)
    if m is None:
        return False
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def _date_paths(t, path: tuple[str, ...], out: list) -> None:
    """The paths (field names from the top) of every string field documented as a date."""
    for f in t.get("fields", ()):
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        if "string" in branches and DATE_DOC in f.get("doc", ""):
            out.append((*path, f["name"]))
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "record":
                _date_paths(b, (*path, f["name"]), out)


def _dates() -> dict[str, tuple[tuple[str, ...], ...]]:
    out = {}
    for name, c in schemas.CURRENT.items():
        found: list = []
        _date_paths(c.raw, (), found)
        if found:
            out[name] = tuple(found)
    return out


#: record type -> the paths of its string fields documented as dates (Referral:
#: service.dueDate, person.birthdate)
DATES = _dates()


def check_dates(name: str, value: dict) -> None:
    """Raise FieldValueError naming the first date field of a ``name`` record dict (valid
    against its contract) that holds a value but no date."""
    for path in DATES.get(name, ()):
        holder = value
        for part in path[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        text = holder.get(path[-1]) if isinstance(holder, dict) else None
        if text is not None and not is_date(text):
            raise FieldValueError(".".join((name, *path)), f"{_shown(text)} is not a date: "
                                                           "write it YYYY-MM-DD, e.g. 1998-04-17")


def intake(name: str, value: Any) -> Record:
    """A record entering the mesh (from the API, the web page, a file): checked against its
    contract (RecordError), then what its fields mean (FieldValueError)."""
    record = from_dict(name, value)
    check_dates(name, record.to_dict())
    return record
