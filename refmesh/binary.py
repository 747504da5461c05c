"""Avro binary encoding compiled once per schema into closures: the codec's fast path.

``encoder(raw)`` gives ``enc(value, out)``, which appends the encoding of ``value`` to the
bytearray ``out`` while checking it as strictly as ``records.check`` does (it accepts a subset of
what the check accepts; on anything else it raises ``Invalid`` and the codec's slow path says
what is wrong). ``decoder(raw)`` gives ``dec(data, pos) -> (value, end)`` for bytes written with
that very schema; what it returns is a valid value of the schema by construction (ints within 32
bits, longs within 64, enum indexes within the symbols, strings strict UTF-8), so it needs no
check after it. It raises ``EOFError`` (or ``IndexError``) when the data ends early and
``ValueError`` when it cannot be a value of the schema. It is stricter than fastavro in two
ways the spec supports: a boolean byte other than 0 or 1 and a negative enum index (which
fastavro reads as a symbol counted from the end) are malformed. Resolving one schema to another
is not done here: the codec leaves that to fastavro.

Only what the contracts use is compiled: records, enums, arrays, fixed, ["null", T] unions and
the primitives. Anything else raises ``NotImplementedError`` at compile time, and the codec
then uses fastavro and ``records.check`` for that schema, as before.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

INT = (-(2**31), 2**31 - 1)
LONG = (-(2**63), 2**63 - 1)


class Invalid(Exception):
    """The value does not match the schema (the codec finds out where and why)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(_varint(n << 1) for n in range(4096))  # zigzag(n) for small n >= 0


def zigzag(n: int) -> bytes:
    """Avro's encoding of a long (and of a bytes or string length): zig-zag, then a
    little-endian base-128 varint."""
    if 0 <= n < 4096:
        return _SMALL[n]
    return _varint(((n << 1) ^ (n >> 63)) & (2**64 - 1))


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint long at ``pos``; at most 10 bytes, 64 bits."""
    b = data[pos]
    n, shift = b & 0x7F, 7
    while b > 0x7F:
        pos += 1
        b = data[pos]
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    if n >> 64:
        raise ValueError("long out of 64-bit range")
    return (n >> 1) ^ -(n & 1), pos + 1


def _length(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:
        n, pos = b >> 1, pos + 1
    else:
        n, pos = read_long(data, pos)
        if n < 0:
            raise ValueError(f"negative length {n}")
    if pos + n > len(data):
        raise EOFError(f"{n} bytes declared, {len(data) - pos} left")
    return n, pos


# --- encoders ----------------------------------------------------------------------------------

def _enc_prim(t: str) -> Callable:
    if t in ("int", "long"):
        lo, hi = INT if t == "int" else LONG

        def enc(v, out):
            if type(v) is not int or not lo <= v <= hi:
                raise Invalid
            out += _SMALL[v] if 0 <= v < 4096 else zigzag(v)
    elif t == "string":
        def enc(v, out):
            if type(v) is not str:
                raise Invalid
            b = v.encode()  # UnicodeEncodeError on a lone surrogate
            n = len(b)
            out += _SMALL[n] if n < 4096 else zigzag(n)
            out += b
    elif t == "bytes":
        def enc(v, out):
            if type(v) is not bytes:
                raise Invalid
            n = len(v)
            out += _SMALL[n] if n < 4096 else zigzag(n)
            out += v
    elif t in ("double", "float"):
        pack = struct.Struct("<d" if t == "double" else "<f").pack

        def enc(v, out):
            if type(v) is not float and type(v) is not int:
                raise Invalid
            out += pack(v)  # OverflowError when it does not fit
    elif t == "boolean":
        def enc(v, out):
            if v is True:
                out += b"\x01"
            elif v is False:
                out += b"\x00"
            else:
                raise Invalid
    elif t == "null":
        def enc(v, out):
            if v is not None:
                raise Invalid
    else:
        raise NotImplementedError(t)
    return enc


def _encoder(t: Any, named: dict) -> Callable:
    if isinstance(t, str):
        if t in named:
            return lambda v, out: named[t](v, out)
        return _enc_prim(t)
    if isinstance(t, list):
        if len(t) != 2 or t[0] != "null" or t[1] == "null":
            raise NotImplementedError("union other than [null, T]")
        inner = _encoder(t[1], named)

        def enc(v, out):
            if v is None:
                out += b"\x00"
            else:
                out += b"\x02"
                inner(v, out)
        return enc
    kind = t["type"]
    if kind == "enum":
        index = {s: zigzag(i) for i, s in enumerate(t["symbols"])}

        def enc(v, out):
            if type(v) is not str or v not in index:
                raise Invalid
            out += index[v]
    elif kind == "array":
        item = _encoder(t["items"], named)

        def enc(v, out):
            if type(v) is not list and type(v) is not tuple:
                raise Invalid
            if v:
                out += zigzag(len(v))
                for x in v:
                    item(x, out)
            out += b"\x00"
    elif kind == "fixed":
        size = t["size"]

        def enc(v, out):
            if type(v) is not bytes or len(v) != size:
                raise Invalid
            out += v
    elif kind == "record":
        _name(t, named, lambda v, out: enc(v, out))
        fields = []
        for f in t["fields"]:
            fenc, default = _encoder(f["type"], named), None
            if "default" in f:
                default = bytearray()
                try:
                    fenc(f["default"], default)
                except Exception as exc:  # a default the fast path cannot write
                    raise NotImplementedError(f"default of {f['name']}") from exc
                default = bytes(default)
            fields.append((f["name"], f["type"], fenc, default))
        enc = _record_encoder(fields)
    else:
        return _encoder(kind, named)
    if "name" in t:
        _name(t, named, enc)
    return enc


# --- decoders ----------------------------------------------------------------------------------

def _dec_prim(t: str) -> Callable:
    if t in ("int", "long"):
        lo, hi = INT if t == "int" else LONG

        def dec(data, pos):
            b = data[pos]
            if b < 0x80:
                return (b >> 1) ^ -(b & 1), pos + 1
            n, pos = read_long(data, pos)
            if not lo <= n <= hi:
                raise ValueError(f"{t} out of range: {n}")
            return n, pos
    elif t in ("string", "bytes"):
        text = t == "string"

        def dec(data, pos):
            n = data[pos]
            if n < 0x80 and not n & 1:  # a length under 64: one byte
                end = pos + 1 + (n >> 1)
                if end <= len(data):
                    return (data[pos + 1:end].decode() if text else data[pos + 1:end]), end
            n, pos = _length(data, pos)
            end = pos + n
            return (data[pos:end].decode() if text else data[pos:end]), end
    elif t in ("double", "float"):
        size, unpack = (8, struct.Struct("<d").unpack_from) if t == "double" else (
            4, struct.Struct("<f").unpack_from)

        def dec(data, pos):
            if pos + size > len(data):
                raise EOFError(t)
            return unpack(data, pos)[0], pos + size
    elif t == "boolean":
        def dec(data, pos):
            b = data[pos]
            if b > 1:
                raise ValueError(f"boolean byte {b}")
            return b == 1, pos + 1
    elif t == "null":
        def dec(data, pos):
            return None, pos
    else:
        raise NotImplementedError(t)
    return dec


def _decoder(t: Any, named: dict) -> Callable:
    if isinstance(t, str):
        if t in named:
            return lambda data, pos: named[t](data, pos)
        return _dec_prim(t)
    if isinstance(t, list):
        if len(t) != 2 or t[0] != "null" or t[1] == "null":
            raise NotImplementedError("union other than [null, T]")
        inner = _decoder(t[1], named)

        def dec(data, pos):
            b = data[pos]
            if b == 0:
                return None, pos + 1
            if b == 2:
                return inner(data, pos + 1)
            i, pos = read_long(data, pos)  # the same index, written in more bytes
            if i == 0:
                return None, pos
            if i == 1:
                return inner(data, pos)
            raise ValueError(f"union index {i}")
        dec.inner = inner  # for the record code below
        return dec
    kind = t["type"]
    if kind == "enum":
        symbols = tuple(t["symbols"])
        quick = {2 * i: s for i, s in enumerate(symbols) if 2 * i < 0x80}

        def dec(data, pos):
            s = quick.get(data[pos])
            if s is not None:
                return s, pos + 1
            i, pos = read_long(data, pos)
            if not 0 <= i < len(symbols):
                raise ValueError(f"enum index {i}")
            return symbols[i], pos
    elif kind == "array":
        item = _decoder(t["items"], named)
        items = t["items"]
        quick = {2 * j: s for j, s in enumerate(items["symbols"]) if 2 * j < 128} if (
            isinstance(items, dict) and items["type"] == "enum") else {}
        if _may_be_empty(t["items"], named):
            raise NotImplementedError("array of zero-width items")

        def dec(data, pos):
            out = []
            while True:
                count = data[pos]
                if count < 0x80:
                    count, pos = (count >> 1) ^ -(count & 1), pos + 1
                else:
                    count, pos = read_long(data, pos)
                if count == 0:
                    return out, pos
                if count < 0:  # a block with its size in bytes
                    count = -count
                    _, pos = read_long(data, pos)
                if count > len(data) - pos:  # every item takes a byte at least
                    raise EOFError(f"{count} items declared, {len(data) - pos} bytes left")
                for _ in range(count):
                    x = quick.get(data[pos])
                    if x is None:
                        x, pos = item(data, pos)
                    else:
                        pos += 1
                    out.append(x)
    elif kind == "fixed":
        size = t["size"]

        def dec(data, pos):
            end = pos + size
            if end > len(data):
                raise EOFError("fixed")
            return data[pos:end], end
    elif kind == "record":
        _name(t, named, lambda data, pos: dec(data, pos))
        dec = _record_decoder([(f["name"], f["type"], _decoder(f["type"], named))
                               for f in t["fields"]])
    else:
        return _decoder(kind, named)
    if "name" in t:
        _name(t, named, dec)
    return dec


# --- records: straight-line code --------------------------------------------------------------
# A record's encoder and decoder are generated as one function each that handles its fields one
# after the other, with the commonest field types (strings, optional strings, enums, small ints)
# written inline; any other value, and every case outside the inline fast path (a long string,
# a wrong value), goes to the field's compiled closure above, which has the whole logic. On a
# full referral this costs a quarter less than a loop over the fields calling a closure each.

def _shape(t: Any) -> str:
    if isinstance(t, list):
        t, nullable = t[1], "null-"
    else:
        nullable = ""
    if isinstance(t, dict) and t["type"] == "enum":
        return nullable + "enum"
    if nullable:
        return "null-string" if t == "string" else "null-other"
    return t if t in ("string", "bytes", "int", "long") else "other"


_ENC = {
    "string": ("elif type(x) is str and len(b := x.encode()) < 64:", "out += S[len(b)]",
               "out += b"),
    "null-string": ("elif x is None:", "out += b'\\0'",
                    "elif type(x) is str and len(b := x.encode()) < 64:", "out += T[len(b)]",
                    "out += b"),
    "enum": ("elif type(x) is str and x in ix{i}:", "out += ix{i}[x]"),
    "null-enum": ("elif x is None:", "out += b'\\0'", "elif type(x) is str and x in ix{i}:",
                  "out += ix{i}[x]"),
    "int": ("elif type(x) is int and 0 <= x < 64:", "out += S[x]"),
    "null-other": ("elif x is None:", "out += b'\\0'"),
}
_ENC["long"] = _ENC["int"]


def _record_encoder(fields: list) -> Callable:
    ns = {"Invalid": Invalid, "M": object(), "names": frozenset(f[0] for f in fields),
          "S": _SMALL, "T": tuple(b"\x02" + _SMALL[n] for n in range(64))}
    code = ["def enc(v, out):", "if type(v) is not dict or not v.keys() <= names:",
            "    raise Invalid"]
    for i, (name, t, fenc, default) in enumerate(fields):
        shape = _shape(t)
        ns[f"e{i}"], ns[f"d{i}"] = fenc, default
        if shape.endswith("enum"):
            tag = b"\x02" if shape.startswith("null-") else b""
            symbols = (t[1] if isinstance(t, list) else t)["symbols"]
            ns[f"ix{i}"] = {s: tag + zigzag(j) for j, s in enumerate(symbols)}
        code += [f"x = v.get({name!r}, M)", "if x is M:",
                 "    raise Invalid" if default is None else f"    out += d{i}"]
        for line in _ENC.get(shape, ()):
            code.append(line.format(i=i) if line.startswith("elif") else "    " + line.format(i=i))
        code += ["else:", f"    e{i}(x, out)"]
    return define("enc", code, ns)


_DEC = {
    "string": ("b = data[pos]",
               "if b < 128 and not b & 1 and (end := pos + 1 + (b >> 1)) <= ln:",
               "    v{i} = data[pos + 1:end].decode()", "    pos = end"),
    "bytes": ("b = data[pos]",
              "if b < 128 and not b & 1 and (end := pos + 1 + (b >> 1)) <= ln:",
              "    v{i} = data[pos + 1:end]", "    pos = end"),
    "null-string": ("b = data[pos]", "if b == 0:", "    v{i} = None", "    pos += 1",
                    "elif b == 2 and pos + 1 < ln and (n := data[pos + 1]) < 128 and not n & 1 "
                    "and (end := pos + 2 + (n >> 1)) <= ln:",
                    "    v{i} = data[pos + 2:end].decode()", "    pos = end"),
    "enum": ("v{i} = q{i}.get(data[pos])", "if v{i} is not None:", "    pos += 1"),
    "int": ("b = data[pos]", "if b < 128:", "    v{i} = (b >> 1) ^ -(b & 1)", "    pos += 1"),
    "null-other": ("b = data[pos]", "if b == 0:", "    v{i} = None", "    pos += 1",
                   "elif b == 2:", "    v{i}, pos = g{i}(data, pos + 1)"),
}
_DEC["long"] = _DEC["int"]
_DEC["null-enum"] = _DEC["null-other"]


def _record_decoder(fields: list) -> Callable:
    ns: dict = {}
    code = ["def dec(data, pos):", "ln = len(data)"]
    for i, (_, t, fdec) in enumerate(fields):
        shape = _shape(t)
        ns[f"f{i}"], ns[f"g{i}"] = fdec, getattr(fdec, "inner", None)
        if shape == "enum":
            ns[f"q{i}"] = {2 * j: s for j, s in enumerate(t["symbols"]) if 2 * j < 128}
        inline = [line.format(i=i) for line in _DEC.get(shape, ())]
        code += inline + ["else:" if inline else "if True:", f"    v{i}, pos = f{i}(data, pos)"]
    made = ", ".join(f"{name!r}: v{i}" for i, (name, _, _) in enumerate(fields))
    code.append(f"return {{{made}}}, pos")
    return define("dec", code, ns)


def define(name: str, code: list[str], ns: dict) -> Callable:
    """The function ``name`` whose first line is ``code[0]`` and body the rest, made in the
    namespace ``ns`` (the names the body uses): for code generated from a schema or a plan."""
    exec("\n    ".join(code) + "\n", ns)  # noqa: S102  (our own generated code, no input)
    return ns[name]


def _may_be_empty(t: Any, named: dict) -> bool:
    """Whether a value of ``t`` can be encoded in zero bytes (null, fixed 0, such records)."""
    if isinstance(t, str):
        raw = named.get(("raw", t))
        return t == "null" if raw is None else _may_be_empty(raw, named)
    if isinstance(t, list):
        return False  # the branch index takes a byte
    kind = t["type"]
    if kind == "record":
        return all(_may_be_empty(f["type"], named) for f in t["fields"])
    if kind == "fixed":
        return t["size"] == 0
    return kind == "null"


def _name(t: dict, named: dict, fn: Callable) -> None:
    for name in (t["name"], f"{t.get('namespace', 'org.refmesh')}.{t['name']}"):
        named[name], named[("raw", name)] = fn, t


def encoder(raw: Any) -> Callable:
    return _encoder(raw, {})


def decoder(raw: Any) -> Callable:
    return _decoder(raw, {})
