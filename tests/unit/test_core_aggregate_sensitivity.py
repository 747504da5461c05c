"""The sensitivity the noise is calibrated to holds: one person moves a window's counts by at
most L1 = 3m and L2 = sqrt(3) m, whatever they do, because the domain counts at most m
decisions, m responses and m ends per person and window (refmesh.aggregate.cap).

The person's events go through ``refmesh.domain.handle`` as the agent runs it (sealed
referrals to several recipients, over two months, re-sent, re-submitted, with any outcomes in
any order, contradictory ones included); the counts are what the effects add. Then every number
a release is computed from (cells, marginals, the total, before noise and before the
threshold) is compared with and without the person.
"""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from refmesh import aggregate, domain, samples
from refmesh.aggregate import privacy
from refmesh.aggregate.rule import with_marginals
from tests import policy_samples as S
from tests.domainfix import KEY, POLICE, PSYCH, SHELTER, HOTLINE, handle, sealed, with_consent

M = domain.Counting().max_per_person  # the agents' default cap
L1, L2_SQUARED = privacy.sensitivity(M)
MONTHS = [S.NOW, aggregate.window_of(S.NOW)[1] + 5 * S.DAY]  # September, then October
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)

REFER = st.tuples(st.just("refer"), st.sampled_from([SHELTER, POLICE, PSYCH]),
                  st.sampled_from(["ET", "PH", "NP"]), st.integers(0, 1), st.booleans())
STATUS = st.tuples(st.just("status"), st.integers(0, 7), st.sampled_from(aggregate.OUTCOMES),
                   st.integers(0, 1), st.booleans())
ACTIONS = st.lists(st.one_of(REFER, STATUS), min_size=1, max_size=14)


def person_counts(actions) -> dict[int, dict[str, int]]:
    """window start -> the counts one person's events add, as the domain counts them."""
    tables = with_consent()
    referrals: list[tuple[dict, str]] = []  # (referral, recipient)
    out: dict[int, dict[str, int]] = {}
    for n, (kind, a, b, month, resend) in enumerate(actions):
        at = MONTHS[month] + n * 60_000
        if kind == "refer":
            recipient, citizenship = a, b
            referral = S.referral(recipient=recipient, purpose="Services",
                                  referral_id=f"00000000-0000-4000-8000-{n:012d}", created_at=at)
            referral["person"]["citizenship"] = [citizenship]
            referrals.append((referral, recipient))
            record, sender, record_type = referral, HOTLINE, "Referral"
        else:
            if a >= len(referrals):
                continue
            referral, recipient = referrals[a]
            record = samples.status(referral_id=referral["referralId"], set_by=recipient,
                                    state=b, at=at, reason="Other" if b in (
                                        "rejected", "failed") else None)
            sender, record_type = recipient, "ReferralStatus"
        for _ in range(2 if resend else 1):  # a re-send keeps its event id
            effects = handle(tables, sealed(record, sender, record_type, at=at,
                                            event_id=f"ev-{n}"), KEY, now=at)
            if effects.counted is not None:
                _, start, cell = effects.counted
                out[start] = aggregate.count(out.get(start, {}), cell)
    return out


OTHERS = st.dictionaries(
    st.builds(lambda c, s, d: aggregate.cell_key(aggregate.cell_of(
        {"person": {"citizenship": [c], "gender": "Feminine"},
         "victim": {"typeOfExploitation": ["ForcedLabour"]}, "trmStage": "FirstAssistance"},
        d, {"jurisdiction": "BH"}, {"role": s}, S.NOW, domain.Counting().dims)),
        st.sampled_from(["ET", "PH", "NP", "IN"]),
        st.sampled_from(["NGO", "LawEnforcement", "CentralGovernmentOrganisation"]),
        st.sampled_from(aggregate.DECISIONS)),
    st.integers(1, 40), max_size=12)


def numbers(counts: dict[str, int]) -> dict[tuple, tuple[str, int]]:
    """Every number a release is computed from: row dimensions -> (kind, count) for the
    cells, the marginals and the total."""
    return {tuple(row[d] for d in aggregate.DIMS): (aggregate.kind_of(row), row["count"])
            for row in with_marginals(counts)}


@PROPERTY
@given(ACTIONS, OTHERS)
def test_one_person_moves_every_number_by_at_most_the_sensitivity(actions, others):
    for mine in person_counts(actions).values():
        values = list(mine.values())
        assert sum(values) <= L1  # L1: each counted event adds one to one cell
        assert sum(v * v for v in values) <= L2_SQUARED  # L2 <= sqrt(3) m
        for stage in privacy.STAGES:  # and at most m per stage
            assert sum(n for key, n in mine.items() if aggregate.STAGE_OF[
                aggregate.cell_from_key(key)["finalStatus"]] == stage) <= M
        without = numbers(others)
        with_person = numbers(aggregate.merge(others, mine))
        moved = {}
        for row in set(without) | set(with_person):
            kind = (with_person.get(row) or without.get(row))[0]
            moved[row] = (kind, abs(with_person.get(row, (kind, 0))[1] -
                                    without.get(row, (kind, 0))[1]))
        assert sum(n for kind, n in moved.values() if kind in ("cell", "outcome")) <= L1
        assert all(n <= L1 for _, n in moved.values())  # every marginal and the total too


def test_the_cap_is_what_bounds_it():
    """Without the cap (m large) the same person would move the counts by more: four
    referrals with two outcomes each in one month count 3m = 6, not 12."""
    actions = [("refer", SHELTER, "ET", 0, False) for _ in range(4)]
    actions += [("status", i, s, 0, False) for i in range(4) for s in ("accepted", "completed")]
    (counts,) = person_counts(actions).values()
    assert sum(counts.values()) == L1 == 6
    assert math.isclose(math.sqrt(sum(v * v for v in counts.values())), math.sqrt(3) * M)
