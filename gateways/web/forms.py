"""The web forms for a referral and a consent: which inputs there are, and how a submitted form
becomes a record or a list of messages, each next to its field.

The referral form's fields come from the Avro contract (``schemas/Referral.avsc``, the source of
truth) section by section, so a field the contract gains appears here by itself. A form input is
named by the record's dotted path (``person.birthdate``): a ``RecordError`` from the contract
(``Referral.person.gender``) lands next to the input of the same name. Errors are i18n keys with
their values, translated when the page is drawn.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from refmesh import fields as catalogue
from refmesh import records, schemas
from refmesh.errors import RecordError

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
COUNTRY = re.compile(r"[A-Z]{2}")
LANGUAGE = re.compile(r"[a-z]{2,3}")
COUNTRY_FIELDS = frozenset({"person.mailingCountry", "victim.countryOfExploitation"})
LANGUAGE_FIELDS = frozenset({"person.primaryLanguage", "person.secondaryLanguage",
                             "needs.interpreterLanguage", "language"})
NOT_ON_FORM = frozenset({"person.ageBand"})  # set by minimisation, never by a case worker
DAY_MS = 86_400_000

Error = tuple  # (i18n key, {values})


@dataclass(frozen=True)
class Field:
    name: str  # dotted path in the record; the input's name
    kind: str  # text, textarea, date, int, select, checks, list, bool
    options: tuple[str, ...] = ()
    required: bool = False

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")


def _field(name: str, avro: dict) -> Field:
    t = avro["type"]
    nullable = isinstance(t, list) and "null" in t
    inner = next(b for b in t if b != "null") if isinstance(t, list) else t
    if isinstance(inner, dict) and inner["type"] == "enum":
        return Field(name, "select", tuple(inner["symbols"]), not nullable)
    if isinstance(inner, dict) and inner["type"] == "array":
        items = inner["items"]
        if isinstance(items, dict) and items["type"] == "enum":
            return Field(name, "checks", tuple(items["symbols"]))
        return Field(name, "list")
    if inner in ("int", "long"):
        return Field(name, "int", required=not nullable)
    if name in catalogue.FREE_TEXT:
        return Field(name, "textarea")
    if "YYYY-MM-DD" in avro.get("doc", ""):
        return Field(name, "date", required=not nullable)
    return Field(name, "text", required=not nullable)


def _section(name: str) -> tuple[Field, ...]:
    avro = next(f for f in catalogue.REFERRAL["fields"] if f["name"] == name)["type"]
    record = next(t for t in (avro if isinstance(avro, list) else [avro])
                  if isinstance(t, dict) and t["type"] == "record")
    return tuple(_field(f"{name}.{f['name']}", f) for f in record["fields"]
                 if f"{name}.{f['name']}" not in NOT_ON_FORM)


_TOP = {f["name"]: f for f in catalogue.REFERRAL["fields"]}
ROUTING = (
    Field("recipientAgency", "recipient", required=True),
    _field("purpose", _TOP["purpose"]),
    _field("trmStage", _TOP["trmStage"]),
    _field("legalBasis", _TOP["legalBasis"]),
    Field("consentId", "consent"),
    Field("subjectId", "text"),
    _field("caseRef", _TOP["caseRef"]),
    _field("senderCaseWorker", _TOP["senderCaseWorker"]),
)
#: The referral form: HTCDS sections in the order a case worker fills them.
REFERRAL_SECTIONS = (("routing", ROUTING), ("person", _section("person")),
                     ("victim", _section("victim")), ("needs", _section("needs")),
                     ("service", _section("service")))
REFERRAL_FIELDS = {f.name: f for _, fs in REFERRAL_SECTIONS for f in fs}
DATE_FIELDS = frozenset(n for n, f in REFERRAL_FIELDS.items() if f.kind == "date")
#: Fields whose values are enum symbols (shown translated).
ENUM_FIELDS = frozenset({*(n for n, f in REFERRAL_FIELDS.items()
                           if f.kind in ("select", "checks")),
                         "victim.methodOfRecruitment", "victim.methodsOfControl",
                         "victim.typeOfSexExploitation"})  # HTCDS picklists kept as strings
PERSON_SECTIONS = ("person", "victim", "needs")

CONSENT_FIELDS = (
    Field("subjectId", "text", required=True),
    Field("givenBy", "select", tuple(schemas.symbols("ConsentGiver")), True),
    Field("method", "select", tuple(schemas.symbols("ConsentMethod")), True),
    Field("channel", "select", tuple(schemas.symbols("ConsentChannel")), True),
    Field("language", "text", required=True),
    Field("noticeVersion", "text", required=True),
    Field("purposes", "checks", tuple(schemas.symbols("Purpose")), True),
    Field("recipientAgencies", "agencies"),
    Field("recipientRoles", "checks", tuple(schemas.symbols("AgencyRole"))),
    Field("dataCategories", "checks", tuple(schemas.symbols("DataCategory"))),
    Field("crossBorder", "bool"),
    Field("crossBorderCountries", "list"),
    Field("validFrom", "date", required=True),
    Field("validUntil", "date"),
)


def field_of(path: str, prefix: str) -> str:
    """The input a contract error names: Referral.person.citizenship[1] -> person.citizenship."""
    name = path.removeprefix(prefix + ".") if path.startswith(prefix + ".") else path
    return re.sub(r"\[\d+\]", "", name)


class Values:
    """A submitted form (or the defaults of an empty one), read as strings and lists."""

    def __init__(self, data=None) -> None:
        self._data = data if data is not None else {}

    def get(self, name: str) -> str:
        value = self._data.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def raw(self, name: str) -> str:
        value = self._data.get(name, "")
        return value if isinstance(value, str) else ""

    def all(self, name: str) -> list[str]:
        getall = getattr(self._data, "getall", None)
        if getall is not None:
            return [v for v in getall(name, []) if isinstance(v, str)]
        value = self._data.get(name, [])
        return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse(f: Field, values: Values, errors: dict):
    """The record value of one input, or None; a problem goes into ``errors[f.name]``."""
    if f.kind == "checks":
        chosen = values.all(f.name)
        return chosen or None
    if f.kind == "bool":
        return values.get(f.name) in ("on", "true", "1")
    text = values.raw(f.name).strip() if f.kind == "textarea" else values.get(f.name)
    if not text:
        if f.required:
            errors[f.name] = ("err.required", {})
        return None
    if f.kind == "date":
        try:
            if not DATE.fullmatch(text):
                raise ValueError
            dt.date.fromisoformat(text)
        except ValueError:
            errors[f.name] = ("err.date", {})
        return text
    if f.kind == "int":
        if not re.fullmatch(r"\d{1,9}", text):
            errors[f.name] = ("err.int", {})
            return text
        return int(text)
    if f.kind == "list":
        items = [p.strip() for p in text.split(",") if p.strip()]
        if f.name in ("person.citizenship", "crossBorderCountries"):
            items = [p.upper() for p in items]
            if not all(COUNTRY.fullmatch(p) for p in items):
                errors[f.name] = ("err.countries", {})
        return items or None
    if f.name in COUNTRY_FIELDS:
        text = text.upper()
        if not COUNTRY.fullmatch(text):
            errors[f.name] = ("err.countries", {})
    if f.name in LANGUAGE_FIELDS:
        text = text.lower()
        if not LANGUAGE.fullmatch(text):
            errors[f.name] = ("err.language", {})
    return text


def referral_from_form(values: Values, consents: dict[str, dict], recipients: set[str]
                       ) -> tuple[dict, dict[str, Error]]:
    """(referral draft, errors by input name) from the send form. ``consents``: consents in
    force recorded here, by id; ``recipients``: agency ids a referral may go to. The draft
    lacks what the gateway fills in (referralId, senderAgency, createdAt)."""
    errors: dict[str, Error] = {}
    parsed = {f.name: _parse(f, values, errors) for f in REFERRAL_FIELDS.values()}
    if parsed["recipientAgency"] and parsed["recipientAgency"] not in recipients:
        errors["recipientAgency"] = ("err.recipient", {})
    consent = None
    if parsed["consentId"]:
        consent = consents.get(parsed["consentId"])
        if consent is None:
            errors["consentId"] = ("err.consent_unknown", {})
    elif parsed["legalBasis"] == "Consent":
        errors["consentId"] = ("err.choose_consent", {})
    subject = parsed["subjectId"]
    if consent is not None:
        if subject and subject != consent["subjectId"]:
            errors["subjectId"] = ("err.subject_mismatch", {})
        subject = consent["subjectId"]
    elif not subject:
        errors.setdefault("subjectId", ("err.required", {}))
    draft = {
        "caseRef": parsed["caseRef"], "subjectId": subject,
        "recipientAgency": parsed["recipientAgency"],
        "senderCaseWorker": parsed["senderCaseWorker"], "trmStage": parsed["trmStage"],
        "purpose": parsed["purpose"], "legalBasis": parsed["legalBasis"],
        "consentId": consent["consentId"] if consent else None,
        "consentVersion": consent["version"] if consent else None,
    }
    for section, fs in REFERRAL_SECTIONS[1:]:
        part = {f.name.split(".", 1)[1]: parsed[f.name] for f in fs}
        if section == "person":
            part["ageBand"] = None
        if section == "service":
            part["services"] = part["services"] or []
        empty = all(v in (None, [], "") for v in part.values())
        draft[section] = None if empty and section in PERSON_SECTIONS else part
    if not errors:
        try:  # the contract has the last word; its error names the input
            records.Referral.from_dict({**draft, "referralId": "preview", "createdAt": 0,
                                        "senderAgency": "XX/GOV/PREVIEW"})
        except RecordError as exc:
            errors[_known(field_of(exc.path, "Referral"), REFERRAL_FIELDS)] = (
                "err.contract", {"problem": exc.problem})
    return draft, errors


def _known(name: str, fields) -> str:
    return name if name in fields else "_form"


def day_start(date_text: str, zone: ZoneInfo) -> int:
    """Epoch ms of midnight at the start of ``date_text`` (YYYY-MM-DD) in ``zone``."""
    day = dt.date.fromisoformat(date_text)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def today(now: int, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(now / 1000, zone).date().isoformat()


def consent_from_form(values: Values, agencies: set[str], me: str, now: int, zone: ZoneInfo
                      ) -> tuple[dict, dict[str, Error]]:
    """(consent draft, errors by input name) from the consent form. The gateway fills in the
    consent id, version 1 and the controller; the Given event is recorded at ``now``."""
    errors: dict[str, Error] = {}
    parsed = {f.name: _parse(f, values, errors) for f in CONSENT_FIELDS if f.kind != "agencies"}
    chosen = values.all("recipientAgencies")
    if any(a not in agencies for a in chosen):
        errors["recipientAgencies"] = ("err.recipient", {})
    if not parsed["purposes"]:
        errors.setdefault("purposes", ("err.required", {}))
    if parsed["crossBorderCountries"] and not parsed["crossBorder"]:
        errors.setdefault("crossBorderCountries", ("err.countries_without", {}))
    valid_from = valid_until = None
    if "validFrom" not in errors and parsed["validFrom"]:
        start = parsed["validFrom"]
        valid_from = now if start == today(now, zone) else day_start(start, zone)
    if "validUntil" not in errors and parsed["validUntil"]:
        valid_until = day_start(parsed["validUntil"], zone) + DAY_MS  # to the end of that day
        if valid_from is not None and valid_until <= valid_from:
            errors["validUntil"] = ("err.until_before", {})
    draft = {
        "subjectId": parsed["subjectId"], "givenBy": parsed["givenBy"],
        "method": parsed["method"], "language": parsed["language"],
        "noticeVersion": parsed["noticeVersion"], "purposes": parsed["purposes"] or [],
        "recipientAgencies": chosen, "recipientRoles": parsed["recipientRoles"] or [],
        "dataCategories": parsed["dataCategories"] or [],
        "crossBorder": parsed["crossBorder"],
        "crossBorderCountries": parsed["crossBorderCountries"] or [],
        "validFrom": valid_from, "validUntil": valid_until,
        "events": [{"type": "Given", "at": now, "channel": parsed["channel"], "recordedBy": me}],
    }
    if not errors:
        try:
            records.Consent.from_dict({**draft, "consentId": "new", "version": 1,
                                       "controller": me})
        except RecordError as exc:
            name = field_of(exc.path, "Consent")
            name = "channel" if name.startswith("events") else name
            errors[_known(name, {f.name for f in CONSENT_FIELDS})] = (
                "err.contract", {"problem": exc.problem})
    return draft, errors


def consent_defaults(now: int, zone: ZoneInfo) -> dict:
    return {"givenBy": "Person", "method": "VerbalWithInterpreter", "channel": "InPerson",
            "noticeVersion": "", "validFrom": today(now, zone), "purposes": ["Services"]}
