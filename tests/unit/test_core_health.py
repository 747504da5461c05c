"""The agent worker's readiness (refmesh.health): ready only when it holds partitions of the
domain inbox, its tables are restored and its release job, if any, is alive; otherwise each
problem is named."""
from __future__ import annotations

from dataclasses import replace

import pytest

from refmesh.health import WorkerFacts, problems, report

INBOX = "refmesh.domain.BH.GOV.NCCTIP.in"
READY = WorkerFacts(INBOX, joined=True, assigned=(0, 2), rebalancing=False, recovering=False,
                    release_job=None)


@pytest.mark.parametrize("release_job", [None, True])
def test_a_worker_holding_partitions_with_its_tables_restored_is_ready(release_job):
    facts = replace(READY, release_job=release_job)
    assert problems(facts) == []
    assert report(facts) == (200, {"ok": True, "problems": [], "partitions": [0, 2]})


@pytest.mark.parametrize("changes, words", [
    ({"joined": False, "assigned": ()}, "no partitions assigned: the worker has not joined"),
    ({"assigned": (), "rebalancing": True},
     f"no partitions assigned: the consumer group is rebalancing {INBOX}"),
    ({"assigned": ()}, f"no partition of {INBOX} (it has more workers than the topic has "
                       "partitions; this one stands by)"),
    ({"rebalancing": True}, f"tables recovering: restoring the tables of partition(s) 0, 2 of "
                            f"{INBOX}"),
    ({"recovering": True}, "tables recovering"),
    ({"release_job": False}, "release job stopped: no statistics are released"),
])
def test_each_problem_is_named(changes, words):
    facts = replace(READY, **changes)
    (found,) = problems(facts)
    assert words in found
    status, body = report(facts)
    assert status == 503 and body["ok"] is False and body["problems"] == [found]


def test_every_problem_at_once_is_listed():
    facts = replace(READY, assigned=(2, 0), recovering=True, release_job=False)
    assert [p.split(":")[0] for p in problems(facts)] == ["tables recovering",
                                                          "release job stopped"]
    assert report(facts)[1]["partitions"] == [0, 2]
