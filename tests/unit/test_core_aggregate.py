"""refmesh.aggregate: coarse cells only, calendar windows, the release rule (suppression,
rounding down, marginals from released cells, noise, corrections that cannot be differenced),
the epsilon ledger, and signed releases.

Property tests state the guarantees regional releases rest on: every marginal is the sum of
the released cells it covers; no suppressed count changes any released number; and a
corrected release after fewer than k late referrals (one person, say) equals the original.
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
    """A person whose combination is unique (count 1 < k): no cell, no marginal, no corrected
    release names their citizenship or age band."""
    crowd = [agg.cell_of(referral(i, citizenship=c), d, BH, NGO, NOW)
             for i, (c, d) in enumerate([("ET", "forwarded")] * 40 + [("PH", "forwarded")] * 25
                                        + [("ET", "refused")] * 12)]
    canary = agg.cell_of(referral(999, citizenship="KE", gender="Masculine",
                                  birthdate="1960-01-01", exploitation="OrganRemoval"),
                         "forwarded", BH, NGO, NOW)
    first = agg.release(counts_of(crowd + [canary]))
    late = agg.release(counts_of(crowd + [canary] * 2), previous=agg.release(counts_of(crowd)))
    for rel in (first, late):
        text = json.dumps(rel.cells)
        for value in ("KE", "Masculine", "48+", "OrganRemoval"):
            assert value not in text


@PROPERTY
@given(COUNTS, st.lists(CELLS, min_size=1, max_size=10))
def test_fewer_than_k_late_referrals_leave_the_corrected_release_as_it_was(counts, extra):
    """The differencing attack: the original and the corrected release of one window, which
    differ by one person (or up to k - 1 referrals), are equal in every released number."""
    original = agg.release(counts)
    grown = dict(counts)
    for cell in extra:
        grown = agg.count(grown, cell)
    corrected = agg.release(grown, previous=original)
    assert corrected.cells == original.cells
    assert corrected.revision == 1 and corrected.recomputed == ()


def test_without_the_correction_rule_one_person_would_show():
    """Why corrections hold values: releasing the grown counts afresh would reveal the late
    person's whole combination (a cell of 10 becomes 11 and appears)."""
    cell = agg.cell_of(referral(citizenship="KE"), "forwarded", BH, NGO, NOW)
    crowd = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    base = {agg.cell_key(cell): 10, agg.cell_key(crowd): 50}
    original = agg.release(base)
    grown = agg.count(base, cell)
    assert "KE" in json.dumps(agg.release(grown).cells)  # naive re-release: revealed
    assert agg.release(grown, previous=original).cells == original.cells  # the rule: not


@settings(PROPERTY, max_examples=100)
@given(COUNTS, CELLS, st.lists(st.floats(-30, 30), min_size=1, max_size=40))
def test_one_more_person_leaves_a_noisy_release_as_it_was_too(counts, person, draws):
    noise = iter(draws * 50).__next__
    original = agg.release(counts, epsilon=0.5, noise=lambda scale: noise())
    corrected = agg.release(agg.count(counts, person), previous=original, epsilon=0.5,
                            noise=lambda scale: noise())
    assert corrected.cells == original.cells and corrected.epsilon is None


def test_k_late_referrals_in_a_cell_do_update_it():
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    other = agg.cell_of(referral(citizenship="PH"), "forwarded", BH, NGO, NOW)
    original = agg.release({agg.cell_key(cell): 30, agg.cell_key(other): 5})
    corrected = agg.release({agg.cell_key(cell): 41, agg.cell_key(other): 15},
                            previous=original)
    assert corrected.recomputed == (agg.cell_key(cell),)
    assert corrected.released == {agg.cell_key(cell): 40}  # other moved by 10 < k: kept out
    again = agg.release({agg.cell_key(cell): 41, agg.cell_key(other): 16}, previous=corrected)
    assert again.released == {agg.cell_key(cell): 40, agg.cell_key(other): 15}
    assert again.revision == 2
    assert agg.Release.from_bytes(again.to_bytes()) == again


def test_release_rule_parameters_are_checked():
    with pytest.raises(ConfigError, match="k must"):
        agg.release({}, k=1)
    with pytest.raises(ConfigError, match="resolution"):
        agg.release({}, resolution=0)
    with pytest.raises(ConfigError, match="noise source"):
        agg.release({}, epsilon=1.0)
    with pytest.raises(ConfigError, match="epsilon"):
        agg.release({}, epsilon=0, noise=lambda s: 0.0)
    with pytest.raises(ConfigError, match="keeps the rule"):
        agg.release({}, previous=agg.release({}), k=20)
    with pytest.raises(AggregateError):
        agg.release({"garbage": 3})
    with pytest.raises(AggregateError):
        agg.Release.from_bytes(b'{"revision": 0}')


# --- differential privacy -------------------------------------------------------------------

def test_noise_is_added_before_suppression_and_rounding():
    low = agg.cell_of(referral(citizenship="ET"), "forwarded", BH, NGO, NOW)
    high = agg.cell_of(referral(citizenship="PH"), "forwarded", BH, NGO, NOW)
    scales, draws = [], iter([4.2, -3.5])

    def noise(scale: float) -> float:
        scales.append(scale)
        return next(draws)

    rel = agg.release({agg.cell_key(low): 8, agg.cell_key(high): 12}, epsilon=0.5,
                      noise=noise, sensitivity=2)
    assert scales == [4.0, 4.0]  # sensitivity / epsilon, one draw per cell
    assert rel.released == {agg.cell_key(low): 10}  # 8 + 4.2 -> 12.2 -> 10; 12 - 3.5 < 11
    assert rel.epsilon == 0.5
    with pytest.raises(ValueError, match="finite"):
        agg.release({agg.cell_key(low): 8}, epsilon=1, noise=lambda s: math.nan)


def test_gaussian_noise_has_the_analytic_scale_and_is_recorded_with_its_delta():
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    scales = []
    rel = agg.release({agg.cell_key(cell): 30}, epsilon=0.5, mechanism="gaussian", delta=1e-6,
                      noise=lambda scale: scales.append(scale) or 2.0)
    sigma = math.sqrt(2 * math.log(1.25 / 1e-6)) / 0.5  # Dwork and Roth, theorem A.1
    assert scales == [pytest.approx(sigma)] and sigma == pytest.approx(10.6, abs=0.1)
    assert rel.released == {agg.cell_key(cell): 30}  # 30 + 2 -> 32 -> 30
    assert (rel.mechanism, rel.delta, rel.epsilon) == ("gaussian", 1e-6, 0.5)
    assert agg.Release.from_bytes(rel.to_bytes()) == rel
    record = agg.decide_release({agg.cell_key(cell): 30}, domain="BH/GOV/NCCT", region="GCC",
                                window=agg.window_of(NOW), epsilon=0.5, budget=1.0,
                                mechanism="gaussian", delta=1e-6, noise=lambda s: 0.0).record
    assert (record["mechanism"], record["delta"]) == ("gaussian", 1e-6)
    assert "gaussian epsilon=0.5 delta=1e-06" in table.describe(record)[0]
    assert {(r["noise"], r["delta"], r["epsilon"]) for r in table.rows([record])} == {
        ("gaussian", 1e-6, 0.5)}
    codec.encode("Aggregate", {**record, "signerKeyId": "sig-x", "signature": b""})
    plain = agg.release({agg.cell_key(cell): 30})
    assert (plain.mechanism, plain.delta, plain.epsilon) == (None, None, None)
    laplace = agg.release({agg.cell_key(cell): 30}, epsilon=0.5, noise=lambda s: 0.0)
    assert (laplace.mechanism, laplace.delta) == ("laplace", None)
    assert agg.noise_scale(0.5, 2) == 4.0


@pytest.mark.parametrize("kwargs, message", [
    ({"mechanism": "gaussian", "epsilon": 2.0, "delta": 1e-6}, "epsilon <= 1"),
    ({"mechanism": "gaussian", "epsilon": 0.5, "delta": None}, "delta between"),
    ({"mechanism": "gaussian", "epsilon": 0.5, "delta": 1.5}, "delta between"),
    ({"mechanism": "uniform", "epsilon": 0.5}, "not one of laplace, gaussian"),
])
def test_noise_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        agg.release({}, noise=lambda s: 0.0, **kwargs)


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


def test_laplace_from_a_uniform_draw():
    assert agg.laplace(0.0, 2.0) == 0.0
    assert agg.laplace(0.25, 2.0) == pytest.approx(-2.0 * math.log(0.5))  # upper quartile
    assert agg.laplace(-0.25, 2.0) == pytest.approx(2.0 * math.log(0.5))
    with pytest.raises(ValueError):
        agg.laplace(0.5, 1.0)


# --- the epsilon ledger ---------------------------------------------------------------------

def test_the_ledger_charges_each_consumer_up_to_its_budget():
    ledger, ok = agg.charge({}, "GCC", 0.4, 1.0)
    assert ok and ledger == {"GCC": 0.4}
    ledger, ok = agg.charge(ledger, "GCC", 0.6, 1.0)
    assert ok and ledger["GCC"] == pytest.approx(1.0)
    refused, ok = agg.charge(ledger, "GCC", 0.1, 1.0)
    assert not ok and refused == ledger
    other, ok = agg.charge(ledger, "EAC", 0.5, 1.0)
    assert ok and other["EAC"] == 0.5  # another consumer has its own budget
    assert agg.charge(ledger, "GCC", None, 1.0) == (ledger, True)  # no noise, nothing spent
    tenths = {}
    for _ in range(3):
        tenths, ok = agg.charge(tenths, "GCC", 0.1, 0.3)
        assert ok
    assert agg.loads_ledger(agg.dumps_ledger(tenths)) == tenths
    with pytest.raises(AggregateError):
        agg.loads_ledger(b'{"GCC": -1}')
    with pytest.raises(ConfigError, match="budget"):
        agg.charge({}, "GCC", 0.1, None)


@settings(PROPERTY, max_examples=200)
@given(st.lists(st.sampled_from(["GCC", "EAC"]), min_size=1, max_size=30),
       st.lists(st.floats(0.01, 2.0), min_size=1, max_size=30), st.floats(0.05, 5.0))
def test_no_consumer_is_ever_charged_beyond_its_budget(consumers, epsilons, budget):
    ledger: dict = {}
    spent = {"GCC": 0.0, "EAC": 0.0}
    for consumer, epsilon in zip(consumers, epsilons):
        after, ok = agg.charge(ledger, consumer, epsilon, budget)
        if ok:
            spent[consumer] += epsilon
            assert after[consumer] == pytest.approx(spent[consumer])
        else:
            assert after == ledger and spent[consumer] + epsilon > budget  # refused: unchanged
        ledger = after
        assert all(v <= budget * (1 + 1e-9) for v in ledger.values())
        assert agg.loads_ledger(agg.dumps_ledger(ledger)) == ledger


def test_decide_release_publishes_corrects_skips_and_refuses():
    window = agg.window_of(NOW)
    cell = agg.cell_of(referral(), "forwarded", BH, NGO, NOW)
    counts = {agg.cell_key(cell): 30}
    first = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window)
    assert isinstance(first, agg.Publish) and first.release.revision == 0
    record = first.record
    assert (record["windowStart"], record["windowEnd"], record["revision"]) == (*window, 0)
    assert record["releaseId"] == agg.release_id("BH/GOV/NCCT", "GCC", window, 0)
    codec.encode("Aggregate", {**record, "signerKeyId": "sig-x", "signature": b""})  # valid
    same = agg.decide_release({agg.cell_key(cell): 31}, domain="BH/GOV/NCCT", region="GCC",
                              window=window, previous=first.release)
    assert same is None  # one late referral: nothing to publish
    moved = agg.decide_release({agg.cell_key(cell): 45}, domain="BH/GOV/NCCT", region="GCC",
                               window=window, previous=first.release)
    assert moved.record["revision"] == 1 and moved.record["cells"][0]["count"] == 45

    noisy = {"epsilon": 0.6, "budget": 1.0, "noise": lambda scale: 0.0}
    spent = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window,
                               **noisy)
    assert spent.ledger == {"GCC": 0.6} and spent.record["epsilon"] == 0.6
    over = agg.decide_release(counts, domain="BH/GOV/NCCT", region="GCC", window=window,
                              ledger=spent.ledger, **noisy)
    assert over == agg.Refused(agg.BUDGET_EXHAUSTED, over.detail) and "GCC" in over.detail


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


# --- the release job's plan for one window --------------------------------------------------

def test_the_release_job_plans_each_window_from_what_it_holds():
    window = agg.window_of(NOW)
    cell = agg.cell_key(agg.cell_of(referral(), "forwarded", BH, NGO, NOW))
    day = 86_400_000
    common = {"domain": "BH/GOV/NCCT", "region": "GCC", "window": window, "ledger": {},
              "grace_ms": day, "max_late_ms": 30 * day}
    open_now, due_now, final_now = window[1] - 1, window[1] + day, window[1] + 30 * day
    assert agg.plan_window({cell: 30}, agg.Held(), now=open_now, **common) == agg.Plan()
    first = agg.plan_window({cell: 30}, agg.Held(), now=due_now, **common)
    assert isinstance(first.outcome, agg.Publish) and not first.delete
    stored = first.outcome.release
    # stored but never published (a crash in between): out as stored, even before it is due
    crashed = agg.plan_window({cell: 30}, agg.Held(stored), now=open_now, **common)
    assert crashed == agg.Plan(republish=stored)
    done = agg.plan_window({cell: 31}, agg.Held(stored, published=0), now=final_now, **common)
    assert done == agg.Plan(delete=True)  # nothing moved by k; final: delete
    noisy = {"epsilon": 0.5, "budget": 0.5, "noise": lambda scale: 0.0}
    spent = {"GCC": 0.5}
    refused = agg.plan_window({cell: 30}, agg.Held(), now=due_now, **{**common,
                              "ledger": spent}, **noisy)
    assert isinstance(refused.outcome, agg.Refused) and refused.audit_refusal == 0
    again = agg.plan_window({cell: 30}, agg.Held(refused=0), now=due_now, **{**common,
                            "ledger": spent}, **noisy)
    assert isinstance(again.outcome, agg.Refused) and again.audit_refusal is None
