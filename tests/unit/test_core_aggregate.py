"""refmesh.aggregate: coarse cells only, calendar windows, the release rule (suppression,
rounding down, marginals from released cells, noise), the privacy ledger, the revision
schedule, and signed releases.

Property tests state the guarantees regional releases rest on: every marginal is the sum of
the released cells it covers; no suppressed count changes any released number; a person whose
cells stay below k changes no released number of any revision; no region is charged beyond its
epsilon or delta budget. (The noise's distributions: test_core_aggregate_noise.py; the
sensitivity: test_core_aggregate_sensitivity.py; the attacker: tests/adversary.)
"""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmesh import aggregate as agg
from refmesh.aggregate import table
from refmesh import codec, directory, keys, samples
from refmesh.errors import AggregateError, ConfigError

T0 = 1_790_000_000_000  # 2026-09-21, keys valid from here
NOW = T0 + 3_600_000
DAY = 86_400_000
BH, QA = {"jurisdiction": "BH", "role": "NGO"}, {"jurisdiction": "QA", "role": "NGO"}
NGO = {"jurisdiction": "BH", "role": "NGO"}
POLICE = {"jurisdiction": "BH", "role": "LawEnforcement"}
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def referral(n: int = 0, *, citizenship="ET", gender="Feminine", birthdate="1998-04-17",
             exploitation="ForcedLabour", stage="FirstAssistance") -> dict:
    r = samples.referral(n=n)
    r["person"].update(citizenship=[citizenship], gender=gender, birthdate=birthdate)
    r["victim"]["typeOfExploitation"] = [exploitation]
    r["trmStage"] = stage
    return r


def counts_of(cells) -> dict:
    counts: dict = {}
    for cell in cells:
        counts = agg.count(counts, cell)
    return counts


# --- cells ----------------------------------------------------------------------------------

IDENTIFIER_FIELDS = ("referralId", "caseRef", "subjectId", "consentId", "senderCaseWorker",
                     "person.firstName", "person.secondName", "person.identityNumber",
                     "person.email", "person.mobilePhone", "person.mailingStreet",
                     "person.birthdate", "service.details", "victim.caseComment",
                     "victim.cityOfExploitation", "needs.medicalNotes")


def _get(record: dict, dotted: str):
    section, _, leaf = dotted.rpartition(".")
    return (record[section] if section else record)[leaf]


def test_a_cell_holds_the_coarse_values_and_no_identifier():
    r = samples.referral()
    cell = agg.cell_of(r, "forwarded", BH, POLICE, NOW)
    assert cell == {"reportingCountry": "BH", "citizenship": "ET", "gender": "Feminine",
                    "ageBand": "27-29", "exploitationType": "ForcedLabour",
                    "trmStage": "FirstAssistance", "recipientRole": "LawEnforcement",
                    "finalStatus": "forwarded"}
    state = agg.dumps(agg.count({}, cell)) + agg.release(agg.count({}, cell), k=2,
                                                         resolution=1).to_bytes()
    for name in IDENTIFIER_FIELDS:
        value = _get(r, name)
        assert value not in cell.values()
        assert json.dumps(value)[1:-1].encode() not in state, name


def test_canary_values_in_every_free_field_become_unknown():
    """Free strings where a code belongs (a passport number as citizenship, a name as age
    band) never pass: only allow-listed values reach a cell."""
    r = samples.referral()
    r["person"].update(citizenship=["CANARY-PASSPORT-123"], ageBand="CANARY-AGE",
                       birthdate="CANARY-BIRTH", gender=None)
    r["victim"]["typeOfExploitation"] = None
    r["trmStage"] = "CANARY-STAGE"  # not a symbol: the contract would refuse it, the cell too
    cell = agg.cell_of(r, "refused", {"jurisdiction": "CANARY"}, {"role": "CANARY"}, NOW)
    assert "CANARY" not in json.dumps(cell)
    assert cell == {**dict.fromkeys(agg.DIMS[:-1], agg.UNKNOWN), "finalStatus": "refused"}
    assert agg.cell_of({"trmStage": "Identification"}, "forwarded", BH, NGO, NOW)[
        "citizenship"] == agg.UNKNOWN  # a referral with every section withheld


def test_decision_must_be_forwarded_or_refused():
    with pytest.raises(ValueError, match="forwarded, refused"):
        agg.cell_of(samples.referral(), "accepted", BH, NGO, NOW)


def test_table_dimensions_can_be_fewer_and_the_rest_read_as_all_values():
    dims = ("reportingCountry", "citizenship", "exploitationType", "finalStatus")
    cell = agg.cell_of(samples.referral(), "forwarded", BH, NGO, NOW, dims=dims)
    assert {d for d, v in cell.items() if v is not None} == set(dims)
    assert agg.kind_of(cell) == "cell"
    with pytest.raises(ConfigError, match="reportingCountry and finalStatus"):
        agg.cell_of(samples.referral(), "forwarded", BH, NGO, NOW, dims=("citizenship",))
    with pytest.raises(ConfigError):
        agg.check_dims(("reportingCountry", "finalStatus", "person.firstName"))


def test_outcome_cells_carry_three_dimensions_and_other_states_none():
    status = samples.status(state="accepted")
    cell = agg.outcome_cell(status, NGO)
    assert {d: v for d, v in cell.items() if v is not None} == {
        "reportingCountry": "BH", "recipientRole": "NGO", "finalStatus": "accepted"}
    assert agg.kind_of(cell) == "outcome"
    assert status["referralId"] not in json.dumps(cell)
    for state in ("requested", "received", "in_progress", "revoked", "refused"):
        assert agg.outcome_cell(samples.status(state=state), NGO) is None


@pytest.mark.parametrize("birthdate, now, band", [
    ("2008-09-21", ms(2026, 9, 21), "18-20"),  # 18 today
    ("2008-09-22", ms(2026, 9, 21), "9-17"),  # 18 tomorrow
    ("2018-01-01", ms(2026, 9, 21), "0-8"),
    ("1978-09-21", ms(2026, 9, 21), "48+"),
    ("2000-02-29", ms(2021, 2, 28), "18-20"),  # a leap-day birthday: 20 only from March 1
    ("2000-02-29", ms(2021, 3, 1), "21-23"),
    ("2030-01-01", ms(2026, 9, 21), agg.UNKNOWN),  # born in the future
    ("2023-02-29", ms(2026, 9, 21), agg.UNKNOWN),  # no such date
    (None, ms(2026, 9, 21), agg.UNKNOWN),
])
def test_age_band_from_the_birth_date(birthdate, now, band):
    assert agg.age_broad(agg.age_at(birthdate, now)) == band


@pytest.mark.parametrize("record_band, band", [
    ("0-4", "0-8"), ("10-14", "9-17"), ("30-34", "30-38"), ("50-54", "48+"), ("48+", "48+"),
    ("25-29", agg.UNKNOWN),  # straddles 24-26 and 27-29
    ("15-19", agg.UNKNOWN), ("29-25", agg.UNKNOWN), ("adult", agg.UNKNOWN), (None, agg.UNKNOWN),
])
def test_age_band_from_the_records_band_only_when_it_fits_one_ctdc_band(record_band, band):
    assert agg.band_from(record_band) == band
    r = samples.referral()
    r["person"].update(birthdate=None, ageBand=record_band)
    assert agg.cell_of(r, "forwarded", BH, NGO, NOW)["ageBand"] == band


# --- windows --------------------------------------------------------------------------------

@pytest.mark.parametrize("year, month, days", [
    (2024, 2, 29), (2023, 2, 28), (2000, 2, 29), (2100, 2, 28), (2026, 12, 31), (2026, 4, 30),
    (1969, 12, 31),  # before the epoch
])
def test_month_windows_at_boundaries_and_leap_years(year, month, days):
    start = ms(year, month, 1)
    end = start + days * DAY
    assert agg.window_of(start) == (start, end)
    assert agg.window_of(end - 1) == (start, end)  # the last millisecond of the month
    assert agg.window_of(end)[0] == end  # the next month begins


@PROPERTY
@given(st.integers(min_value=ms(1900, 1, 1), max_value=ms(2200, 1, 1)))
def test_month_window_matches_the_calendar(ts):
    start, end = agg.window_of(ts, "month")
    assert start <= ts < end
    first = datetime.fromtimestamp(start / 1000, UTC)
    assert (first.day, first.hour, first.minute, first.second) == (1, 0, 0, 0)
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    assert end == int(nxt.timestamp() * 1000)
    moment = datetime.fromtimestamp(ts / 1000, UTC)
    assert (moment.year, moment.month) == (first.year, first.month)


def test_day_hour_minute_windows_and_labels():
    ts = ms(2026, 9, 21, 10, 5, 30) + 123
    assert agg.window_of(ts, "day") == (ms(2026, 9, 21), ms(2026, 9, 22))
    assert agg.window_of(ts, "hour") == (ms(2026, 9, 21, 10), ms(2026, 9, 21, 11))
    assert agg.window_of(ts, "minute") == (ms(2026, 9, 21, 10, 5), ms(2026, 9, 21, 10, 6))
    assert agg.label(agg.window_of(ts)) == "2026-09"
    assert agg.label(agg.window_of(ts, "day")) == "2026-09-21"
    assert agg.label(agg.window_of(ts, "minute")) == "2026-09-21T10:05"
    with pytest.raises(ConfigError, match="month, day, hour, minute"):
        agg.window_of(ts, "week")


def test_a_window_is_due_after_its_grace_and_final_after_the_lateness_limit():
    window = agg.window_of(ms(2026, 9, 21))
    grace, late = 2 * DAY, 30 * DAY
    assert not agg.due(window, ms(2026, 10, 2, 23, 59), grace)
    assert agg.due(window, ms(2026, 10, 3), grace)
    now = ms(2026, 10, 31)
    assert agg.event_time(ms(2026, 10, 15), now, late) == ms(2026, 10, 15)
    assert agg.event_time(ms(2026, 9, 30), now, late) == ms(2026, 10, 1)  # 31 days: clamped
    assert agg.event_time(ms(2020, 1, 1), now, late) == now - late  # backdated: clamped
    assert agg.event_time(now + DAY, now, late) == now  # from the future: now
    assert not agg.final(window, now - 1, late)  # Sep 30 23:59:59.999 could still arrive
    assert agg.final(window, now, late)  # the earliest an event can count at is Oct 1


# --- state ----------------------------------------------------------------------------------

def test_counting_is_pure_and_the_state_round_trips_as_bytes():
    cell = agg.cell_of(samples.referral(), "forwarded", BH, NGO, NOW)
    empty: dict = {}
    one = agg.count(empty, cell)
    assert empty == {} and one == {agg.cell_key(cell): 1}
    window = agg.window_of(NOW)
    state = agg.add(agg.add({}, window, cell), window, cell)
    assert state == {window: {agg.cell_key(cell): 2}}
    assert agg.loads(agg.dumps(state[window])) == state[window]
    assert agg.loads(None) == {}
    assert agg.merge(one, one, {}) == {agg.cell_key(cell): 2}
    with pytest.raises(ValueError):
        agg.count({}, {**dict.fromkeys(agg.DIMS), "citizenship": "ET"})  # a marginal


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"x": 1}', b'{"[1]": 1}',
                                  json.dumps({agg.cell_key(agg.outcome_cell(
                                      {"state": "accepted"}, NGO)): -1}).encode()])
def test_loading_a_damaged_state_is_an_error_not_a_guess(data):
    with pytest.raises(AggregateError):
        agg.loads(data)


# --- the release rule -----------------------------------------------------------------------

REFERRAL_CELLS = st.fixed_dictionaries({
    "reportingCountry": st.sampled_from(["BH", "QA"]),
    "citizenship": st.sampled_from(["ET", "PH", "IN"]),
    "gender": st.sampled_from(["Feminine", "Masculine"]),
    "ageBand": st.sampled_from(["18-20", "21-23"]),
    "exploitationType": st.sampled_from(["ForcedLabour", "Servitude"]),
    "trmStage": st.just("FirstAssistance"),
    "recipientRole": st.sampled_from(["NGO", "LawEnforcement"]),
    "finalStatus": st.sampled_from(agg.DECISIONS),
})
OUTCOME_CELLS = st.builds(
    lambda country, role, state: {**dict.fromkeys(agg.DIMS), "reportingCountry": country,
                                  "recipientRole": role, "finalStatus": state},
    st.sampled_from(["BH", "QA"]), st.sampled_from(["NGO", "LawEnforcement"]),
    st.sampled_from(agg.OUTCOMES))
# outcomes counted in their referral's cell (refmesh.domain) or by the recipient alone
RICH_OUTCOMES = st.builds(agg.outcome_of, REFERRAL_CELLS, st.sampled_from(agg.OUTCOMES))
CELLS = st.one_of(REFERRAL_CELLS, REFERRAL_CELLS, OUTCOME_CELLS, RICH_OUTCOMES)
COUNTS = st.dictionaries(CELLS.map(agg.cell_key), st.integers(1, 60), max_size=30)


def base_cells(release: agg.Release) -> list[dict]:
    return [c for c in release.cells if agg.kind_of(c) in ("cell", "outcome")]


def test_cells_below_k_are_suppressed_and_counts_rounded_down():
    cells = [agg.cell_of(referral(i, citizenship=c), "forwarded", BH, NGO, NOW)
             for i, c in enumerate(["ET"] * 14 + ["PH"] * 10 + ["IN"] * 23 + ["NP"] * 11)]
    rel = agg.release(counts_of(cells))
    released = {c["citizenship"]: c["count"] for c in base_cells(rel)}
    assert released == {"ET": 10, "IN": 20, "NP": 10}  # PH (10 < 11) suppressed
    total = next(c for c in rel.cells if agg.kind_of(c) == "total")
    assert total["count"] == 40  # the released cells' sum, not the true 58
    assert rel.revision == 0 and rel.epsilon is None


@PROPERTY
@given(COUNTS)
def test_every_marginal_is_the_sum_of_the_released_cells_it_covers(counts):
    rel = agg.release(counts)
    base = base_cells(rel)
    for cell in base:
        n = counts[agg.cell_key(cell)]
        assert n >= 11 and cell["count"] == n // 5 * 5
    for key, n in counts.items():
        if n < 11:
            assert key not in rel.released
    marginals = [c for c in rel.cells if agg.kind_of(c) in ("marginal", "total")]
    assert sum(agg.kind_of(c) == "total" for c in marginals) == 1
    for m in marginals:
        assert m["count"] == sum(c["count"] for c in base if agg.covers(m, c)), m
    assert all(agg.kind_of(c) != "invalid" for c in rel.cells)
    assert all(c["count"] % 5 == 0 for c in rel.cells)


@PROPERTY
@given(COUNTS, st.data())
def test_no_suppressed_count_changes_any_released_number(counts, data):
    """Complementary suppression: whatever the suppressed cells hold (including nothing),
    every released number is the same, so no total minus released cells can reveal one."""
    changed = dict(counts)
    for key, n in counts.items():
        if n < 11:
            new = data.draw(st.integers(0, 10), label=key)
            if new:
                changed[key] = new
            else:
                del changed[key]
    assert agg.release(changed).cells == agg.release(counts).cells


def test_the_canary_person_never_appears_in_any_release():
    """A person whose combination is unique (count 1 < k): no cell, no marginal, no revision
    names their citizenship or age band."""
    crowd = [agg.cell_of(referral(i, citizenship=c), d, BH, NGO, NOW)
             for i, (c, d) in enumerate([("ET", "forwarded")] * 40 + [("PH", "forwarded")] * 25
                                        + [("ET", "refused")] * 12)]
    canary = agg.cell_of(referral(999, citizenship="KE", gender="Masculine",
                                  birthdate="1960-01-01", exploitation="OrganRemoval"),
                         "forwarded", BH, NGO, NOW)
    first = agg.release(counts_of(crowd + [canary]))
    late = agg.release(counts_of(crowd + [canary] * 2), revision=1)
    for rel in (first, late):
        text = json.dumps(rel.cells)
        for value in ("KE", "Masculine", "48+", "OrganRemoval"):
            assert value not in text


@PROPERTY
@given(COUNTS, st.lists(CELLS, min_size=1, max_size=6))
def test_a_person_whose_cells_stay_below_k_changes_no_released_number(counts, person):
    """Without noise, the differencing attack finds nothing: adding one person (up to 3m = 6
    counted events) whose cells all stay below k leaves every released number (cells,
    marginals, total) of every revision exactly as it was, so no difference or sum of
    released numbers gives their cells' counts."""
    grown = dict(counts)
    for cell in person:
        grown = agg.count(grown, cell)
    if all(grown[agg.cell_key(c)] < 11 for c in person):
        for revision in (0, 1):
            assert agg.release(grown, revision=revision).cells == agg.release(
                counts, revision=revision).cells


def test_every_revision_recomputes_every_cell_from_the_counts():
    """No k-move rule (its decision was itself an exact-count signal): a revision shows the
    counts of its time, whatever moved; only its schedule decides that it appears."""
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    other = agg.cell_of(referral(citizenship="PH"), "forwarded", BH, NGO, NOW)
    first = agg.release({agg.cell_key(cell): 30, agg.cell_key(other): 5})
    assert first.released == {agg.cell_key(cell): 30}
    corrected = agg.release({agg.cell_key(cell): 36, agg.cell_key(other): 11}, revision=1,
                            final_revision=1)
    assert corrected.released == {agg.cell_key(cell): 35, agg.cell_key(other): 10}
    assert (corrected.revision, corrected.final_revision, corrected.threshold) == (1, 1, 11)
    assert agg.Release.from_bytes(corrected.to_bytes()) == corrected


def test_a_release_stored_before_the_schedule_is_still_read():
    old = json.dumps({"revision": 1, "k": 11, "resolution": 5, "epsilon": 0.5,
                      "mechanism": "laplace", "delta": None, "released": {},
                      "basis": {}}).encode()
    rel = agg.Release.from_bytes(old)
    assert (rel.revision, rel.final_revision, rel.threshold, rel.epsilon, rel.mechanism) == (
        1, 1, 11, 0.5, "laplace")
    record = agg.record_of(rel, domain="BH/GOV/NCCT", region="GCC", window=agg.window_of(NOW))
    codec.encode("Aggregate", {**record, "signerKeyId": "sig-x", "signature": b""})


def test_release_rule_parameters_are_checked():
    with pytest.raises(ConfigError, match="k must"):
        agg.release({}, k=1)
    with pytest.raises(ConfigError, match="resolution"):
        agg.release({}, resolution=0)
    with pytest.raises(ConfigError, match="noise source"):
        agg.release({}, noise=agg.calibrate(epsilon=1, delta=1e-6))
    with pytest.raises(ConfigError, match="calibrate it with this rule"):
        agg.release({}, k=200, noise=agg.calibrate(epsilon=1, delta=1e-6), draw=lambda n: 0)
    with pytest.raises(AggregateError):
        agg.release({"garbage": 3})
    with pytest.raises(AggregateError):
        agg.Release.from_bytes(b'{"revision": 0}')
    with pytest.raises(AggregateError):
        agg.Release.from_bytes(json.dumps({"revision": 0, "k": 11, "resolution": 5,
                                           "released": {}, "noise": {"epsilon": "x"}}).encode())


# --- differential privacy -------------------------------------------------------------------

def test_noise_is_added_before_the_threshold_and_rounding():
    noise = agg.calibrate(epsilon=1.0, delta=1e-6)  # Laplace b = 6, threshold 97
    low = agg.cell_of(referral(citizenship="ET"), "forwarded", BH, NGO, NOW)
    high = agg.cell_of(referral(citizenship="PH"), "forwarded", BH, NGO, NOW)
    seen, draws = [], iter([4, -3])

    def draw(n: agg.Noise) -> int:
        seen.append(n)
        return next(draws)

    rel = agg.release({agg.cell_key(low): 95, agg.cell_key(high): 99}, noise=noise, draw=draw)
    assert seen == [noise, noise]  # one draw per cell
    assert rel.released == {agg.cell_key(low): 95}  # 95 + 4 -> 99 -> 95; 99 - 3 < 97
    assert rel.threshold == 97 and rel.epsilon == 1.0 and rel.mechanism == "laplace"
    assert rel.noise["sensitivityL1"] == 6 and rel.noise["noiseScale"] == 6.0
    with pytest.raises(ValueError, match="integers"):
        agg.release({agg.cell_key(low): 8}, noise=noise, draw=lambda n: 0.5)


def test_gaussian_noise_is_recorded_with_its_parameters():
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    noise = agg.calibrate(epsilon=0.5, delta=1e-6, mechanism="gaussian")
    rel = agg.release({agg.cell_key(cell): 300}, noise=noise, draw=lambda n: 2)
    assert rel.released == {agg.cell_key(cell): 300}  # 300 + 2 -> 302 -> 300
    assert (rel.mechanism, rel.epsilon) == ("gaussian", 0.5) and rel.delta <= 1e-6
    assert rel.noise["rho"] == float(noise.rho) and rel.noise["noiseScale"] == pytest.approx(
        math.sqrt(noise.scale))
    assert rel.noise["sensitivityL2"] == pytest.approx(2 * math.sqrt(3))
    assert agg.Release.from_bytes(rel.to_bytes()) == rel
    out = agg.decide_release({agg.cell_key(cell): 300}, domain="BH/GOV/NCCT", region="GCC",
                             window=agg.window_of(NOW), noise=noise, draw=lambda n: 0,
                             budget=1.0, delta_budget=2e-6)
    record = out.record
    assert (record["mechanism"], record["delta"], record["threshold"]) == (
        "gaussian", noise.delta, noise.threshold)
    assert (record["epsilonRemaining"], record["deltaRemaining"]) == pytest.approx(
        (0.5, 2e-6 - noise.delta))
    assert (record["windowEpsilon"], record["windowDelta"]) == (0.5, noise.delta)
    head, line = table.describe(record)[:2]
    assert "threshold=" in head and "gaussian epsilon=0.5" in line and "rho=" in line
    assert "region left epsilon=0.5" in line
    assert {(r["noise"], r["delta"], r["epsilon"]) for r in table.rows([record])} == {
        ("gaussian", noise.delta, 0.5)}
    codec.encode("Aggregate", {**record, "signerKeyId": "sig-x", "signature": b""})
    plain = agg.release({agg.cell_key(cell): 30})
    assert (plain.mechanism, plain.delta, plain.epsilon, plain.noise) == (None,) * 4


def test_an_outcome_keeps_its_referrals_cell():
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    outcome = agg.outcome_of(cell, "accepted")
    assert outcome == {**cell, "finalStatus": "accepted"} and agg.kind_of(outcome) == "outcome"
    assert agg.cell_from_key(agg.cell_key(outcome)) == outcome
    with pytest.raises(ValueError, match="not one of"):
        agg.outcome_of(cell, "forwarded")
    with pytest.raises(ValueError, match="not a referral cell"):
        agg.outcome_of({"citizenship": "ET"}, "accepted")
    # outcomes count only in the finalStatus marginal, never in the referral totals
    rel = agg.release({agg.cell_key(cell): 20, agg.cell_key(outcome): 15})
    total = next(c for c in rel.cells if agg.kind_of(c) == "total")
    accepted = [c for c in rel.cells if agg.kind_of(c) == "marginal"
                and c["finalStatus"] == "accepted"]
    assert total["count"] == 20 and [c["count"] for c in accepted] == [15]


# --- the privacy ledger ---------------------------------------------------------------------

def test_the_ledger_charges_epsilon_and_delta_per_region_and_window():
    sep, october = agg.window_of(NOW)[0], agg.window_of(NOW)[1]
    ledger, over = agg.charge({}, "GCC", sep, 0.4, 1e-7, 1.0, 3e-7)
    assert over is None and ledger == {"GCC": {"epsilon": 0.4, "delta": 1e-7,
                                               "windows": {str(sep): [0.4, 1e-7]}}}
    ledger, over = agg.charge(ledger, "GCC", october, 0.6, 1e-7, 1.0, 3e-7)
    assert over is None and ledger["GCC"]["epsilon"] == pytest.approx(1.0)
    refused, over = agg.charge(ledger, "GCC", october, 0.1, 1e-7, 1.0, 3e-7)
    assert over == "epsilon" and refused == ledger
    _, over = agg.charge(ledger, "GCC", october, 0.0, 2e-7, 2.0, 3e-7)
    assert over == "delta"
    other, over = agg.charge(ledger, "EAC", sep, 0.5, 1e-7, 1.0, 3e-7)
    assert over is None and other["EAC"]["epsilon"] == 0.5  # another region: its own budget
    assert agg.loads_ledger(agg.dumps_ledger(ledger)) == ledger
    forgot = agg.forget_window(ledger, "GCC", sep)
    assert forgot["GCC"]["windows"] == {str(october): [0.6, 1e-7]}
    assert forgot["GCC"]["epsilon"] == ledger["GCC"]["epsilon"]  # the total keeps it
    assert agg.loads_ledger(b'{"GCC": 0.7}') == {"GCC": {"epsilon": 0.7, "delta": 0.0,
                                                         "windows": {}}}  # the old form
    for bad in (b'{"GCC": -1}', b'{"GCC": {"epsilon": 1}}', b"[]", b"x"):
        with pytest.raises(AggregateError):
            agg.loads_ledger(bad)
    with pytest.raises(ConfigError, match="budget"):
        agg.charge({}, "GCC", sep, 0.1, 0.0, None, 1.0)


@settings(PROPERTY, max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["GCC", "EAC"]), st.integers(0, 3),
                          st.floats(0.01, 2.0), st.floats(0, 1e-6)), min_size=1, max_size=30),
       st.floats(0.05, 5.0), st.floats(1e-7, 1e-5))
def test_no_region_is_ever_charged_beyond_its_budget(charges, budget, delta_budget):
    ledger: dict = {}
    spent = {"GCC": [0.0, 0.0], "EAC": [0.0, 0.0]}
    for region, window, epsilon, delta in charges:
        after, over = agg.charge(ledger, region, window, epsilon, delta, budget, delta_budget)
        if over is None:
            spent[region][0] += epsilon
            spent[region][1] += delta
            assert after[region]["epsilon"] == pytest.approx(spent[region][0])
            assert after[region]["delta"] == pytest.approx(spent[region][1])
            assert sum(e for e, _ in after[region]["windows"].values()) == pytest.approx(
                spent[region][0])  # the windows add up to the total (basic composition)
        else:
            assert after == ledger and (spent[region][0] + epsilon > budget
                                        or spent[region][1] + delta > delta_budget)
        ledger = after
        assert all(v["epsilon"] <= budget * (1 + 1e-9) and v["delta"] <= delta_budget *
                   (1 + 1e-9) for v in ledger.values())
        assert agg.loads_ledger(agg.dumps_ledger(ledger)) == ledger


def test_decide_release_publishes_and_refuses_before_drawing():
    window = agg.window_of(NOW)
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    counts = {agg.cell_key(cell): 30}
    first = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window)
    assert isinstance(first, agg.Publish) and first.release.revision == 0
    record = first.record
    assert (record["windowStart"], record["windowEnd"], record["revision"]) == (*window, 0)
    assert record["releaseId"] == agg.release_id("BH/GOV/NCCT", "GCC", window, 0)
    assert (record["threshold"], record["epsilon"], record["epsilonRemaining"]) == (11, None,
                                                                                    None)
    codec.encode("Aggregate", {**record, "signerKeyId": "sig-x", "signature": b""})  # valid

    noise = agg.calibrate(epsilon=0.6, delta=1e-6)
    drawn = []
    noisy = {"noise": noise, "draw": lambda n: drawn.append(n) or 0, "budget": 1.0,
             "delta_budget": 1e-5}
    spent = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window,
                               **noisy)
    assert spent.ledger["GCC"]["epsilon"] == 0.6 and spent.record["epsilon"] == 0.6
    assert spent.record["epsilonRemaining"] == pytest.approx(0.4) and len(drawn) == 1
    over = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window,
                              revision=1, ledger=spent.ledger, **noisy)
    assert over == agg.Refused(agg.BUDGET_EXHAUSTED, over.detail) and "GCC" in over.detail
    assert len(drawn) == 1  # refused before any draw
    tight = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window,
                               **{**noisy, "delta_budget": noise.delta / 2})
    assert tight.reason == agg.DELTA_BUDGET_EXHAUSTED


# --- the topic and signed releases ----------------------------------------------------------

COORD, DOMAIN, MEMBER, OTHER = "BH/GOV/MOFA", "BH/GOV/NCCT", "BH/NGO/SHELTER", "QA/GOV/NCCT"


@pytest.fixture(scope="module")
def mesh():
    ks = {a: keys.generate(a, T0) for a in (COORD, DOMAIN, MEMBER, OTHER)}
    roles = {COORD: "CentralGovernmentOrganisation", DOMAIN: "CentralGovernmentOrganisation",
             MEMBER: "NGO", OTHER: "CentralGovernmentOrganisation"}
    draft = directory.empty(COORD)
    for agency, k in ks.items():
        draft = directory.add_member(draft, directory.member_entry(
            k, agency, roles[agency], agency[:2], DOMAIN if agency == MEMBER else None, T0))
    anchor = directory.TrustAnchor.of(ks[COORD])
    trusted = directory.load(directory.sign(draft, ks[COORD], T0), anchor, NOW)
    revoked = directory.revoke_key(draft, DOMAIN, ks[DOMAIN].signing.key_id, T0 + 1)
    return ks, trusted, directory.load(directory.sign(revoked, ks[COORD], T0), anchor, NOW)


def record(domain: str = DOMAIN, count: int = 30) -> dict:
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    return agg.decide_release({agg.cell_key(cell): count}, domain=domain, region="GCC",
                              window=agg.window_of(NOW)).record


def test_a_signed_release_verifies(mesh):
    ks, trusted, _ = mesh
    data = agg.sign_release(record(), ks[DOMAIN])
    got = agg.verify_release(data, trusted, NOW)
    assert got == {**record(), "signerKeyId": ks[DOMAIN].signing.key_id,
                   "signature": got["signature"]}
    with pytest.raises(ConfigError, match="names domain"):
        agg.sign_release(record(), ks[OTHER])


def test_any_changed_byte_is_detected(mesh):
    ks, trusted, _ = mesh
    data = agg.sign_release(record(), ks[DOMAIN])
    for i in range(10, len(data), 7):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(AggregateError):
            agg.verify_release(bytes(tampered), trusted, NOW)


def test_a_changed_count_under_the_old_signature_is_refused(mesh):
    ks, trusted, _ = mesh
    _, value = codec.decode(agg.sign_release(record(), ks[DOMAIN]))
    value["cells"][0]["count"] = 5000
    with pytest.raises(AggregateError) as exc:
        agg.verify_release(codec.encode("Aggregate", value), trusted, NOW)
    assert exc.value.reason == "bad_signature"


def _forged(signer: keys.AgencyKeys, named: str, key_id: str) -> bytes:
    body = {**record(named), "signerKeyId": key_id, "signature": b""}
    signature = keys.sign(signer.signing, codec.encode("Aggregate", body))
    return codec.encode("Aggregate", {**body, "signature": signature})


@pytest.mark.parametrize("case, reason", [
    ("other domain's key", "wrong_signer"),  # QA's domain signs a release naming BH's
    ("other key, claimed id", "bad_signature"),  # ... claiming BH's key id
    ("member, not a domain", "not_a_domain"),
    ("unknown agency", "unknown_agency"),
])
def test_only_the_named_domain_can_sign_its_release(mesh, case, reason):
    ks, trusted, _ = mesh
    data = {
        "other domain's key": lambda: _forged(ks[OTHER], DOMAIN, ks[OTHER].signing.key_id),
        "other key, claimed id": lambda: _forged(ks[OTHER], DOMAIN, ks[DOMAIN].signing.key_id),
        "member, not a domain": lambda: _forged(ks[MEMBER], MEMBER, ks[MEMBER].signing.key_id),
        "unknown agency": lambda: _forged(ks[OTHER], "ET/GOV/NONE", ks[OTHER].signing.key_id),
    }[case]()
    with pytest.raises(AggregateError) as exc:
        agg.verify_release(data, trusted, NOW)
    assert exc.value.reason == reason


def test_a_revoked_key_and_garbage_are_refused(mesh):
    ks, _, revoked = mesh
    with pytest.raises(AggregateError) as exc:
        agg.verify_release(agg.sign_release(record(), ks[DOMAIN]), revoked, NOW)
    assert exc.value.reason == "revoked_key"
    for garbage in (b"", b"\xc3\x01" + b"\0" * 20, codec.encode("Receipt", {
            "deliveryKey": "x", "eventId": "e", "outcome": "Stored", "receivedBy": DOMAIN,
            "at": NOW})):
        with pytest.raises(AggregateError) as exc:
            agg.verify_release(garbage, revoked, NOW)
        assert exc.value.reason == "malformed"


def test_region_topic():
    assert agg.topic("GCC") == "refmesh.region.GCC.aggregates"
    for bad in ("", "G.C", "a/b", "x" * 33):
        with pytest.raises(ConfigError, match="region"):
            agg.topic(bad)


# --- the schedule ---------------------------------------------------------------------------

def test_revisions_follow_a_fixed_schedule_from_due_to_final():
    window = agg.window_of(NOW)
    day = 86_400_000
    assert agg.schedule(window, 2 * day, 30 * day, 1) == [window[1] + 2 * day,
                                                          window[1] + 30 * day]
    assert agg.schedule(window, 2 * day, 30 * day, 2) == [
        window[1] + 2 * day, window[1] + 16 * day, window[1] + 30 * day]
    assert agg.schedule(window, 2 * day, 30 * day, 0) == [window[1] + 2 * day]
    assert agg.scheduled_revision(window, window[1] + day, 2 * day, 30 * day, 2) is None
    assert agg.scheduled_revision(window, window[1] + 20 * day, 2 * day, 30 * day, 2) == 1
    assert agg.scheduled_revision(window, window[1] + 99 * day, 2 * day, 30 * day, 2) == 2
    with pytest.raises(ConfigError, match="no later than"):
        agg.schedule(window, 3 * day, 2 * day, 1)
    with pytest.raises(ConfigError, match="integer >= 0"):
        agg.schedule(window, 0, day, -1)


def test_every_window_from_the_cursor_is_visited_whatever_its_counts():
    minute = 60_000
    t = agg.window_of(NOW, "minute")[0]
    now = t + 10 * minute + 5
    cursor = agg.first_cursor(now, "minute", 3 * minute)
    assert cursor == t + 7 * minute  # the oldest window not final
    due = agg.windows_due(cursor, now, "minute", minute)
    assert [w[0] for w in due] == [t + 7 * minute, t + 8 * minute]  # t+9 closes at t+10: grace
    assert agg.next_cursor(cursor, now, "minute", 3 * minute) == cursor
    later = now + 2 * minute
    assert agg.next_cursor(cursor, later, "minute", 3 * minute) == t + 9 * minute
    assert agg.open_windows("minute", 3 * minute) == 4 and agg.open_windows("month", 0) == 2


def test_the_release_job_plans_each_window_from_what_it_holds():
    window = agg.window_of(NOW)
    cell = agg.cell_key(agg.cell_of(referral(), "forwarded", BH, NGO, NOW))
    day = 86_400_000
    common = {"domain": "BH/GOV/NCCT", "region": "GCC", "window": window, "ledger": {},
              "grace_ms": day, "max_late_ms": 30 * day, "revisions": 1}
    open_now, due_now, final_now = window[1] - 1, window[1] + day, window[1] + 30 * day
    assert agg.plan_window({cell: 30}, agg.Held(), now=open_now, **common) == agg.Plan()
    first = agg.plan_window({cell: 30}, agg.Held(), now=due_now, **common)
    assert isinstance(first.outcome, agg.Publish) and not first.delete
    stored = first.outcome.release
    assert (stored.revision, stored.final_revision) == (0, 1)
    # stored but never published (a crash in between): out as stored, even before it is due
    crashed = agg.plan_window({cell: 30}, agg.Held(stored), now=open_now, **common)
    assert crashed == agg.Plan(republish=stored)
    # published: nothing more until the next revision is due, whatever the counts do
    quiet = agg.plan_window({cell: 300}, agg.Held(stored, published=0), now=due_now + day,
                            **common)
    assert quiet == agg.Plan()
    done = agg.plan_window({cell: 31}, agg.Held(stored, published=0), now=final_now, **common)
    assert done.outcome.release.revision == 1 and done.delete  # the last revision, then delete
    empty = agg.plan_window({}, agg.Held(), now=due_now, **common)
    assert isinstance(empty.outcome, agg.Publish) and empty.outcome.release.released == {}
    gone = agg.plan_window({cell: 30}, agg.Held(), now=final_now, releasable=False, **common)
    assert gone == agg.Plan(delete=True)  # before the cursor: deleted, never released again
    noisy = {"noise": agg.calibrate(epsilon=0.5, delta=1e-6), "budget": 0.5,
             "delta_budget": 1e-5, "draw": lambda n: 0}
    spent, _ = agg.charge({}, "GCC", 0, 0.5, 0.0, 0.5, 1e-5)
    refused = agg.plan_window({cell: 30}, agg.Held(), now=due_now, **{**common,
                              "ledger": spent}, **noisy)
    assert isinstance(refused.outcome, agg.Refused) and refused.audit_refusal == 0
    again = agg.plan_window({cell: 30}, agg.Held(refused=0), now=due_now, **{**common,
                            "ledger": spent}, **noisy)
    assert isinstance(again.outcome, agg.Refused) and again.audit_refusal is None
