"""Settings files: unknown keys, wrong types and missing keys are named; the statistics and
differential-privacy settings of the agents are checked when the settings are built."""
from __future__ import annotations

import pytest

from refmesh.errors import ConfigError
from refmesh.settings import AgentSettings, build

BASE = {"keystore": "keys", "directory": "dir.json", "anchor": "anchor.json",
        "domain": "BH/GOV/NCCTIP", "policy": "policy.yaml"}


def agents(**over) -> AgentSettings:
    return build(AgentSettings, {**BASE, **over}, source="agents.yaml")


def test_a_good_file_builds_with_the_defaults():
    s = agents(region="GCC", aggregate_epsilon=0.5, aggregate_delta=1e-6, aggregate_budget=2)
    assert (s.aggregate_k, s.aggregate_resolution, s.aggregate_noise) == (11, 5, "laplace")
    assert s.aggregate_max_late_ms == 30 * 86_400_000 and s.aggregate_budget == 2
    assert (s.aggregate_max_referrals_per_person, s.aggregate_revisions) == (2, 1)
    noise = s.aggregate_privacy()  # calibrated from the rule: L1 = 3m = 6, b = 6/0.5
    assert (noise.l1, noise.scale, noise.threshold) == (6, 12, 187)
    assert s.delta_budget() == pytest.approx(4e-6)  # as many releases as the epsilon budget
    assert agents().aggregate_privacy() is None  # no epsilon: no noise


@pytest.mark.parametrize("over, message", [
    ({"aggregate_epsilom": 1}, "unrecognised setting(s) aggregate_epsilom"),
    ({"aggregate_sensitivity": 1}, "unrecognised setting(s) aggregate_sensitivity"),
    ({"aggregate_k": "11"}, "setting 'aggregate_k' must be int"),
    ({"aggregate_epsilon": True}, "setting 'aggregate_epsilon' must be"),
    ({"aggregate_epsilon": 0.5}, "aggregate_epsilon needs aggregate_delta"),
    ({"aggregate_epsilon": 0.5, "aggregate_delta": 1e-6}, "needs aggregate_budget"),
    ({"aggregate_epsilon": 0.5, "aggregate_delta": 1e-6, "aggregate_budget": 0.1},
     "at least aggregate_epsilon"),
    ({"aggregate_epsilon": -1, "aggregate_delta": 1e-6, "aggregate_budget": 1},
     "epsilon must be a positive number"),
    ({"aggregate_epsilon": 0.5, "aggregate_delta": 2.0, "aggregate_budget": 1},
     "delta between 0 and 1"),
    ({"aggregate_epsilon": 0.5, "aggregate_delta": 1e-6, "aggregate_budget": 1,
      "aggregate_delta_budget": 1e-9}, "at least one release's delta"),
    ({"aggregate_noise": "exponential"}, "not one of laplace, gaussian"),
    ({"aggregate_k": 1}, "k must be an integer of at least 2"),
    ({"aggregate_max_referrals_per_person": 0}, "per person and window must be a positive"),
    ({"aggregate_revisions": -1}, "integer >= 0"),
    ({"aggregate_grace_ms": 40 * 86_400_000}, "no later than it is final"),
    ({"aggregate_unit": "minute"}, "keeps more than 1000 minute windows open"),
    ({"aggregate_unit": "week"}, "not one of month, day, hour, minute"),
    ({"aggregate_max_late_ms": -1}, "aggregate_max_late_ms must be >= 0"),
])
def test_bad_statistics_settings_are_named(over, message):
    with pytest.raises(ConfigError) as err:
        agents(**over)
    assert message in str(err.value) and str(err.value).startswith("agents.yaml"), err.value


def test_a_missing_required_setting_is_named():
    with pytest.raises(ConfigError, match="agents.yaml: setting 'domain' is required"):
        build(AgentSettings, {k: v for k, v in BASE.items() if k != "domain"},
              source="agents.yaml")
