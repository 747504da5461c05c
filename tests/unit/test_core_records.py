"""refmesh.records: frozen dataclasses generated from the contracts, strict from_dict with the
dotted path of the first wrong field, defaults, and the JSON form (bytes as hex)."""
from __future__ import annotations

import copy
import dataclasses

import pytest

from refmesh import records, samples
from refmesh.errors import ConfigError, FieldValueError, MeshError, RecordError

Referral = records.Referral


def _referral(changes: dict | None = None, **kw) -> dict:
    """The sample referral with changes; nested fields are named with "__" (person__gender)."""
    changes = {**(changes or {}), **kw}
    value = copy.deepcopy(samples.referral())
    for dotted, new in changes.items():
        *parents, last = dotted.split("__")
        target = value
        for p in parents:
            target = target[p]
        target[last] = new
    return value


def _member() -> dict:
    return {"agencyId": "BH/NGO/SHELTER", "name": "Example Shelter", "role": "NGO",
            "jurisdiction": "BH", "domain": None,
            "keys": [{"keyId": "x25519-0123456789abcdef", "kind": "X25519",
                      "publicKey": bytes(range(32)), "validFrom": 1, "validUntil": None,
                      "revokedAt": None}]}


def test_round_trip_of_the_sample_referral():
    value = samples.referral()
    record = Referral.from_dict(value)
    assert isinstance(record, records.Record)
    assert record.to_dict() == value
    assert Referral.from_dict(record.to_dict()) == record
    assert records.from_dict("Referral", value) == record


def test_nested_records_are_generated_classes():
    record = Referral.from_dict(samples.referral())
    assert isinstance(record.person, records.Person)
    assert record.person.firstName == samples.referral()["person"]["firstName"]
    assert type(record.service).__name__ == "ServiceRequest"


def test_arrays_become_tuples():
    record = Referral.from_dict(samples.referral())
    assert record.service.services == ("Shelter", "Interpreter")
    assert record.person.citizenship == ("ET",)
    assert isinstance(record.victim.methodsOfControl, tuple)
    # ... and lists again in the plain dict that the codec writes.
    assert record.to_dict()["service"]["services"] == ["Shelter", "Interpreter"]


def test_records_are_frozen():
    record = Referral.from_dict(samples.referral())
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.caseRef = "changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.person.firstName = "changed"
    assert hash(record) == hash(Referral.from_dict(samples.referral()))


STRICT = {
    "unknown nested field": ({"person__nickname": "Ami"}, "Referral.person.nickname"),
    "unknown top field": ({"nickname": "Ami"}, "Referral.nickname"),
    "wrong type": ({"createdAt": "yesterday"}, "Referral.createdAt"),
    "float for long": ({"createdAt": 1.5}, "Referral.createdAt"),
    "null for required": ({"referralId": None}, "Referral.referralId"),
    "bad enum symbol": ({"trmStage": "Stage9"}, "Referral.trmStage"),
    "bad enum symbol in union": ({"person__gender": "Unknown"}, "Referral.person.gender"),
    "bad enum symbol in array": ({"service__services": ["Shelter", "Spa"]},
                                 "Referral.service.services[1]"),
    "int above 32 bits": ({"consentVersion": 2**31}, "Referral.consentVersion"),
    "int below 32 bits": ({"person__numberOfChildren": -(2**31) - 1},
                          "Referral.person.numberOfChildren"),
    "bool for int": ({"person__numberOfChildren": True}, "Referral.person.numberOfChildren"),
    "bool for long": ({"createdAt": False}, "Referral.createdAt"),
    "string for array": ({"person__citizenship": "ET"}, "Referral.person.citizenship"),
    "int in string array": ({"person__citizenship": ["ET", 7]}, "Referral.person.citizenship[1]"),
    "list for record": ({"service": ["Shelter"]}, "Referral.service"),
}


@pytest.mark.parametrize("changes, path", STRICT.values(), ids=STRICT.keys())
def test_strict_errors_name_the_dotted_path(changes, path):
    with pytest.raises(RecordError) as err:
        Referral.from_dict(_referral(changes))
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: ")
    assert err.value.problem


def test_int_range_edges_are_accepted():
    value = _referral(consentVersion=2**31 - 1, person__numberOfChildren=-(2**31))
    record = Referral.from_dict(value)
    assert record.consentVersion == 2**31 - 1


def test_missing_required_field():
    value = samples.referral()
    del value["createdAt"]
    with pytest.raises(RecordError) as err:
        Referral.from_dict(value)
    assert err.value.path == "Referral.createdAt"
    assert "required" in err.value.problem


def test_missing_required_nested_field():
    value = samples.referral()
    del value["service"]["reason"]  # has a default on the enum type, not on the field
    with pytest.raises(RecordError) as err:
        Referral.from_dict(value)
    assert err.value.path == "Referral.service.reason"


def test_unknown_field_message_lists_the_known_ones():
    with pytest.raises(RecordError) as err:
        Referral.from_dict(_referral(person__nickname="Ami"))
    assert "firstName" in err.value.problem


def test_record_error_is_a_value_error():
    assert issubclass(RecordError, MeshError) and issubclass(RecordError, ValueError)


def test_not_a_dict():
    with pytest.raises(RecordError) as err:
        Referral.from_dict(["not", "a", "dict"])
    assert err.value.path == "Referral"


def test_defaults_are_filled_for_omitted_optional_fields():
    value = samples.referral()
    for name in ("senderCaseWorker", "consentId", "consentVersion", "person", "victim", "needs"):
        del value[name]
    # reason and urgency have no field default (their enum defaults only serve schema resolution)
    value["service"] = {"reason": "Other", "urgency": "Routine"}
    record = Referral.from_dict(value)
    assert record.senderCaseWorker is None and record.person is None and record.needs is None
    assert record.consentId is None and record.consentVersion is None and record.victim is None
    assert record.service.services == ()
    assert record.service.dueDate is None and record.service.details is None
    assert record.to_dict()["service"] == {"reason": "Other", "services": [], "urgency": "Routine",
                                           "dueDate": None, "details": None}


def test_defaults_in_consent():
    value = samples.consent()
    for name in ("recipientAgencies", "recipientRoles", "crossBorder", "crossBorderCountries",
                 "validUntil"):
        del value[name]
    record = records.Consent.from_dict(value)
    assert (record.recipientAgencies, record.recipientRoles, record.crossBorder,
            record.crossBorderCountries, record.validUntil) == ((), (), False, (), None)


def test_json_form_writes_bytes_as_hex_and_reads_them_back():
    member = records.Member.from_dict(_member())
    doc = member.to_json()
    assert doc["keys"][0]["publicKey"] == bytes(range(32)).hex()
    assert isinstance(doc["keys"][0]["publicKey"], str)
    again = records.Member.from_json(doc)
    assert again == member
    assert again.keys[0].publicKey == bytes(range(32))
    assert member.to_dict()["keys"][0]["publicKey"] == bytes(range(32))


def test_json_form_of_a_fixed():
    header = {"eventId": "e", "eventType": "Referral", "sender": "BH/NGO/A",
              "recipient": "BH/NGO/B", "senderKeyId": "sig-0", "recipientKeyId": "x25519-0",
              "schemaFingerprint": "0102030405060708", "createdAt": 1,
              "suite": "X25519_HKDFSHA256_AES256GCM"}
    record = records.EnvelopeHeader.from_json(header)
    assert record.schemaFingerprint == bytes.fromhex("0102030405060708")
    assert record.to_json() == header


def test_json_form_refuses_bad_hex_and_wrong_size():
    doc = records.Member.from_dict(_member()).to_json()
    doc["keys"][0]["publicKey"] = "not hex"
    with pytest.raises(RecordError) as err:
        records.Member.from_json(doc)
    assert err.value.path == "Member.keys[0].publicKey"
    with pytest.raises(RecordError):
        records.EnvelopeHeader.from_json({"schemaFingerprint": "0102"})


def test_from_dict_does_not_take_hex_for_bytes():
    doc = records.Member.from_dict(_member()).to_json()
    with pytest.raises(RecordError) as err:
        records.Member.from_dict(doc)
    assert err.value.path == "Member.keys[0].publicKey"


def test_from_dict_by_name_needs_a_contract():
    with pytest.raises(ConfigError):
        records.from_dict("Nickname", {})


# --- dates (issue 14, item 6) ---------------------------------------------------------------

def test_the_date_fields_are_read_from_the_contracts_docs():
    assert records.DATES == {"Referral": (("service", "dueDate"), ("person", "birthdate"))}


@pytest.mark.parametrize("text, ok", [
    ("1998-04-17", True), ("2024-02-29", True), ("2000-02-29", True), ("0001-01-01", True),
    ("2023-02-29", False), ("1900-02-29", False), ("2024-04-31", False), ("2024-13-01", False),
    ("2024-00-10", False), ("2024-01-00", False), ("1998-4-17", False), ("19980417", False),
    ("17/04/1998", False), ("1998-04-17T00:00", False), (" 1998-04-17", False),
    ("1998-04-17\n", False), ("١٩٩٨-٠٤-١٧", False), ("", False), ("unknown", False),
])
def test_a_date_is_a_calendar_date_written_yyyy_mm_dd(text, ok):
    assert records.is_date(text) is ok


@pytest.mark.parametrize("section, field", [("person", "birthdate"), ("service", "dueDate")])
def test_intake_refuses_a_date_field_that_holds_no_date_naming_it(section, field):
    referral = samples.referral()
    referral[section][field] = "17/04/1998"
    records.Referral.from_dict(referral)  # the contract (the wire) takes any string
    with pytest.raises(FieldValueError) as refused:
        records.intake("Referral", referral)
    assert refused.value.path == f"Referral.{section}.{field}"
    assert "'17/04/1998' is not a date" in str(refused.value) and "YYYY-MM-DD" in str(
        refused.value)
    referral[section][field] = None  # absent is fine
    assert records.intake("Referral", referral).to_dict() == referral
    referral["person"] = None  # so is a withheld section
    records.intake("Referral", referral)


def test_intake_checks_the_contract_first():
    referral = samples.referral()
    referral["person"]["birthdate"] = 19980417
    with pytest.raises(RecordError) as refused:
        records.intake("Referral", referral)
    assert not isinstance(refused.value, FieldValueError)
    assert refused.value.path == "Referral.person.birthdate"
