"""Hostile requests for a gateway's API: the ``api/`` half of the hostile corpus.

Three endpoints, each with a template (a valid body, in ``api/templates.json``) and a list of
cases (``api/<endpoint>.json``). A case's body is one of
    {"patch": {"set": {path: value}, "remove": [path]}}   the template, changed
    {"json": value}                                         a whole JSON value
    {"b64": "..."}                                          raw bytes (not JSON, not UTF-8...)
    {"recipe": {"at": path, "huge": n | "deep": n | "raw": text}}
                                                            the template with the value at
                                                            ``path`` replaced by an n-character
                                                            string, n nested arrays or raw JSON
                                                            text (too big, or not JSON, to store)
and ``status`` is the class the gateway must answer ("4xx"; "2xx" for injection strings in free
text, which must then be stored verbatim), ``field`` the field it must name, where it names one.
A date field (documented YYYY-MM-DD) is no free text: anything but a date there is refused (422).
Placeholders in bodies and paths are filled in by the test: @RECIPIENT@ (a member agency),
@REFERRAL@ (a referral the gateway holds), @UNIQUE@ (unique per run).
"""
from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path

from refmesh import records, samples, schemas
from refmesh.errors import RecordError

MiB = 1024 * 1024
PATHS = {"referrals": "/v1/referrals", "consents": "/v1/consents",
         "status": "/v1/referrals/@REFERRAL@/status"}
CONTRACT = {"referrals": "Referral", "consents": "Consent", "status": "ReferralStatus"}
TEMPLATES = {  # what the gateway fills in itself (senderAgency, controller) is left out
    "referrals": {k: v for k, v in samples.referral(
        referral_id="@UNIQUE@", recipient="@RECIPIENT@", n=6).items() if k != "senderAgency"},
    "consents": {k: v for k, v in samples.consent(6).items() if k != "controller"},
    "status": {"state": "accepted", "detail": "x"},
}
FILLED = {  # the gateway's defaults (gateways/gateway.py), to predict the field it names
    "referrals": lambda b: {"referralId": "r", "createdAt": 0, **b, "senderAgency": "BH/GOV/X"},
    "consents": lambda b: {"consentId": "c", "version": 1, "validFrom": 0, "events": [], **b,
                           "controller": "BH/GOV/X"},
}
PAYLOADS = {  # injection strings, put in every text field
    "sql-drop": "x'); DROP TABLE referrals; --",
    "sql-or": "' OR '1'='1' --",
    "sql-union": "\" UNION SELECT record FROM inbox --",
    "html-script": "<script>alert('refmesh')</script>",
    "html-attr": "\"><img src=x onerror=alert(1)>",
    "template": "{{7*7}}${7*7}<%= 7*7 %>",
    "control": "nul\u0000byte\u202eRTL\r\nX-Injected: 1",
}
NOT_DATES = ["17/04/1998", "1998-4-17", "2023-02-29", "1998-04-17T00:00:00Z", "next week",
             "١٩٩٨-٠٤-١٧", PAYLOADS["sql-drop"]]  # the last but two: Arabic-Indic digits
WRONG = {"string": [12345, ["list"]], "int": ["12", 2**31], "long": ["1790000000000", 2**63],
         "enum": [7, "NotASymbol"], "boolean": ["true", 1], "array": ["not-a-list"],
         "record": [["not", "an", "object"], "text"]}


def _leaves(t, path: str, named: dict, out: list) -> None:
    """(dotted path, Avro kind) of every field under ``t``, sections included; an array's
    items as ``path[0]``."""
    if isinstance(t, list):
        for branch in t:
            if branch != "null":
                _leaves(branch, path, named, out)
        return
    if isinstance(t, str):
        out.append((path, named[t]["type"] if t in named else t))
        return
    if "name" in t:
        named[t["name"]] = t
    if path:
        out.append((path, t["type"]))
    if t["type"] == "record":
        for f in t["fields"]:
            _leaves(f["type"], f"{path}.{f['name']}" if path else f["name"], named, out)
    elif t["type"] == "array":
        _leaves(t["items"], f"{path}[0]", named, out)


def leaves(kind: str) -> list[tuple[str, str]]:
    out: list = []
    _leaves(schemas.contract(CONTRACT[kind]).raw, "", {}, out)
    return out


def apply(template: dict, patch: dict) -> dict:
    """``template`` with ``patch`` applied: paths are dotted, ``[0]`` is an array's first item;
    sections and arrays missing on the way are created."""
    body = copy.deepcopy(template)
    for path, value in patch.get("set", {}).items():
        holder, last = _walk(body, path)
        if last == "[0]":
            holder[0] = value
        else:
            holder[last] = value
    for path in patch.get("remove", []):
        holder, last = _walk(body, path)
        holder.pop(last, None)
    return body


def _walk(body: dict, path: str):
    parts = re.findall(r"\[0\]|[^.\[\]]+", path)
    holder = body
    for part, following in zip(parts, parts[1:]):
        if part == "[0]":
            holder = holder[0]
            continue
        if following == "[0]" and not holder.get(part):
            holder[part] = [None]
        elif not isinstance(holder.get(part), (dict, list)):
            holder[part] = {}
        holder = holder[part]
    return holder, parts[-1]


def field_error(kind: str, body) -> str | None:
    """The field the gateway's checks name for ``body`` (the contract, then what fields mean:
    ``records.intake``); None if it passes."""
    filled = json.loads(json.dumps(body).replace("@RECIPIENT@", "BH/GOV/Y")
                        .replace("@UNIQUE@", "u"))
    try:
        records.intake(CONTRACT[kind], FILLED[kind](filled))
    except RecordError as exc:
        return exc.path
    return None


def _case(name: str, body: dict, status: str = "4xx", **extra) -> dict:
    return {"name": name, "body": body, "status": status, **extra}


def _record_cases(kind: str) -> list[dict]:
    template, fields = TEMPLATES[kind], leaves(kind)
    cases = []

    def patched(name: str, patch: dict, status: str = "4xx", **extra) -> None:
        field = field_error(kind, apply(template, patch))
        if status == "4xx" and field is None and "field" not in extra:
            return  # the gateway fills it in (referralId, createdAt...) or it has a default
        assert status == "4xx" or field is None, f"{name}: {field} fails the contract"
        cases.append(_case(name, {"patch": patch}, status, **({"field": field} | extra)
                           if status == "4xx" else extra))

    for path, avro_kind in fields:
        for wrong in WRONG[avro_kind]:
            patched(f"wrong type: {path} = {json.dumps(wrong)}", {"set": {path: wrong}})
    for path, _ in fields:
        if "[0]" not in path:
            patched(f"missing {path}", {"remove": [path]})
    patched("unknown top-level field", {"set": {"isAdmin": True}})
    if kind == "referrals":
        patched("unknown field in a section", {"set": {"person.nickname": "x"}})
    dates = {".".join(p) for p in records.DATES.get(CONTRACT[kind], ())}
    text = [p for p, k in fields if k == "string" and p not in dates]
    for path in sorted(dates):
        for wrong in NOT_DATES:
            patched(f"not a date: {path} = {json.dumps(wrong)}", {"set": {path: wrong}})
    # the recipient must be a member; ids appear in URLs; the gateway writes its own id as the
    # sender or controller whatever the body says
    routing = {"recipientAgency", "referralId", "senderAgency"} if kind == "referrals" else {
        "consentId", "controller"}
    own_id = "referralId" if kind == "referrals" else "consentId"
    enum_field = "purpose" if kind == "referrals" else "givenBy"
    for name, payload in PAYLOADS.items():
        everywhere = {p: payload for p in text if p not in routing}
        patched(f"{name} in every text field", {"set": {**everywhere,
                                                        own_id: f"@UNIQUE@-{name}"}},
                "2xx", verbatim=True)
        if kind == "referrals":  # must be a member: the directory check names the field
            patched(f"{name} as recipientAgency", {"set": {"recipientAgency": payload}},
                    field="Referral.recipientAgency")
        patched(f"{name} as an enum value ({enum_field})", {"set": {enum_field: payload}})
    cases.append(_case("a lone UTF-16 surrogate in every free-text field", {"patch": {
        "set": {p: "\ud800 lone" for p in text if p not in routing}}}))
    big, deep = ("person.firstName", "caseRef") if kind == "referrals" else (
        "language", "subjectId")
    return cases + common_cases(template, big, deep)


def common_cases(template: dict, big: str, deep: str) -> list[dict]:
    """Size, depth, number and encoding attacks, the same for every endpoint."""
    cases = [
        _case(f"a 1 MiB string in {big}", {"recipe": {"at": big, "huge": MiB}}),
        _case(f"a 300 KiB string in {big} (just over the body limit)",
              {"recipe": {"at": big, "huge": 300 * 1024}}),
        _case("nesting depth 100000 (as text)", {"recipe": {"at": deep, "deep": 100_000}}),
        _case("an integer of 5000 digits", {"recipe": {"at": deep, "raw": "1" * 5000}}),
        _case("NaN", {"recipe": {"at": deep, "raw": "NaN"}}),
        _case("-Infinity", {"recipe": {"at": deep, "raw": "-Infinity"}}),
    ]
    # Around Python's recursion limit, which depths json.loads takes but the gateway's own code
    # cannot walk depends on the server's stack depth (seen: 975 alone): every one, 900-1001.
    for depth in (500, *range(900, 1002), 1100, 5000):
        cases.append(_case(f"nesting depth {depth}", {"recipe": {"at": deep, "deep": depth}}))
    raw = {"not JSON": b"not json", "an empty body": b"", "an open brace": b"{",
           "a NUL byte": b"\x00", "two objects": b"{}{}", "JSON null": b"null",
           "a JSON number": b"42", "a JSON string": b'"referral"', "JSON true": b"true",
           "an empty JSON array": b"[]",
           "an array holding the valid body": json.dumps([template]).encode(),
           "invalid UTF-8": b'{"caseRef": "\xc3\x28"}',
           "overlong UTF-8": b'{"caseRef": "\xc0\xaf"}',
           "a UTF-8 encoded surrogate": b'{"caseRef": "\xed\xa0\x80"}',
           "a Latin-1 body": b'{"caseRef": "caf\xe9"}',
           "a NUL byte inside the JSON text": b'{"caseRef"\x00: 1}'}
    for name, data in raw.items():
        cases.append(_case(name, {"b64": base64.b64encode(data).decode()}))
    return cases


def _status_cases() -> list[dict]:
    cases = []
    for field, values in {"state": [5, None, [], {"a": 1}, True, "lost"],
                          "reason": [5, [], {"a": 1}, True, "NotAReason"],
                          "detail": [5, [], {"a": 1}, True]}.items():
        for value in values:
            body = {"state": "rejected" if field == "reason" else "accepted", field: value}
            cases.append(_case(f"wrong type: {field} = {json.dumps(value)}", {"json": body},
                               field=f"ReferralStatus.{field}"))
    cases += [
        _case("state missing", {"json": {"reason": "LackOfCapacity"}}, field="state"),
        _case("unknown field setBy", {"json": {"state": "accepted", "setBy": "BH/GOV/X"}},
              field="setBy"),
        _case("unknown field referralId", {"json": {"state": "accepted", "referralId": "x"}},
              field="referralId"),
        _case("a state only the sender may set", {"json": {"state": "revoked"}}),
        _case("rejected without a reason", {"json": {"state": "rejected"}}),
        _case("a referral that does not exist", {"json": {"state": "accepted"}},
              path="/v1/referrals/no-such-referral/status"),
        _case("SQL in the path", {"json": {"state": "accepted"}},
              path="/v1/referrals/x'%20OR%20'1'%3D'1/status"),
        _case("a script tag in the path", {"json": {"state": "accepted"}},
              path="/v1/referrals/%3Cscript%3Ealert(1)%3C%2Fscript%3E/status"),
        _case("path traversal", {"json": {"state": "accepted"}},
              path="/v1/referrals/..%2F..%2Fhealthz/status"),
        _case("invalid UTF-8 in the path", {"json": {"state": "accepted"}},
              path="/v1/referrals/%FF%FE/status"),
        _case("a UTF-8 encoded surrogate in the path", {"json": {"state": "accepted"}},
              path="/v1/referrals/%ED%A0%80/status"),
        _case("a lone surrogate in detail", {"json": {"state": "accepted", "detail": "\udfff"}}),
    ]
    for name, payload in PAYLOADS.items():
        cases.append(_case(f"{name} as state", {"json": {"state": payload}},
                           field="ReferralStatus.state"))
        cases.append(_case(f"{name} as reason", {"json": {"state": "rejected",
                                                           "reason": payload}},
                           field="ReferralStatus.reason"))
    cases += common_cases(TEMPLATES["status"], "detail", "detail")
    cases.append(_case("every injection string in detail", {"json": {
        "state": "accepted", "detail": " ".join(PAYLOADS.values())}}, "2xx", verbatim=True))
    return cases


def api_cases() -> dict[str, list[dict]]:
    """{endpoint: cases}; the accepted (2xx) ones come last."""
    cases = {"referrals": _record_cases("referrals"), "consents": _record_cases("consents"),
             "status": _status_cases()}
    return {k: sorted(v, key=lambda c: c["status"] == "2xx") for k, v in cases.items()}


def write_api(folder: Path) -> int:
    (folder / "templates.json").write_text(json.dumps(TEMPLATES, indent=1) + "\n")
    cases = api_cases()
    for kind, items in cases.items():
        (folder / f"{kind}.json").write_text(json.dumps(items, indent=1) + "\n")
    return sum(map(len, cases.values()))


def load_api_cases(folder: Path) -> dict[str, list[dict]]:
    """{endpoint: cases}, each with its ``path`` and ``kind`` (placeholders still in)."""
    templates = json.loads((folder / "templates.json").read_text())
    out = {}
    for kind, path in PATHS.items():
        cases = json.loads((folder / f"{kind}.json").read_text())
        out[kind] = [{"path": path, "kind": kind, "template": templates[kind], **c}
                     for c in cases]
    return out


def _fill(text: str, subst: dict[str, str]) -> str:
    for placeholder, value in subst.items():
        text = text.replace(placeholder, value)
    return text


def request_path(case: dict, subst: dict[str, str]) -> str:
    return _fill(case["path"], subst)


def request_body(case: dict, subst: dict[str, str]) -> bytes:
    """The bytes to send for a case: placeholders filled in, patches applied, recipes
    expanded."""
    body = case["body"]
    if "b64" in body:
        return base64.b64decode(body["b64"])
    if "json" in body:
        return _fill(json.dumps(body["json"]), subst).encode()
    if "patch" in body:
        return _fill(json.dumps(apply(case["template"], body["patch"])), subst).encode()
    recipe = body["recipe"]
    text = _fill(json.dumps(apply(case["template"], {"set": {recipe["at"]: "@@RAW@@"}})), subst)
    if "huge" in recipe:
        raw = '"' + "A" * recipe["huge"] + '"'
    elif "deep" in recipe:
        raw = "[" * recipe["deep"] + "]" * recipe["deep"]
    else:
        raw = recipe["raw"]
    return text.replace('"@@RAW@@"', raw).encode()


def expected_body(case: dict, subst: dict[str, str]):
    """For an accepted case, the JSON value the gateway must have stored verbatim."""
    return json.loads(request_body(case, subst))
