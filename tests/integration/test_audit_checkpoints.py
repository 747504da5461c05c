"""The domain's last decisions before a quiet spell or a stop are confirmed by a signed checkpoint
(issue 12, item 7), on the real brokers: ``refmesh audit verify`` reports every chain confirmed,
with no unconfirmed tail, without any further decision.

The agents sign a partition's chain head inside an event at its first audit record after a
start, then every ``audit_checkpoint_every`` records (left at 100 here), and between events
(agents/checkpoints.py) on a timer once the last checkpoint is ``audit_checkpoint_s`` old, and
when the worker stops. Each test runs its own mesh (one partition: one chain, whose first record
only is signed in its event): one with ``audit_checkpoint_s`` 2 that stays quiet, one with an
hour (so the timer never signs) whose agents get SIGTERM."""
from __future__ import annotations

import uuid

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from devmesh.supervise import wait_until
from tests.integration.meshfix import Mesh, start_mesh

HOTLINE, NCC = "BH/GOV/HOTLINE", "BH/GOV/NCCTIP"
DEADLINE_S = 90
RECORDS = 4


def mesh_with(tmp_path_factory, kafka, checkpoint_s: int) -> Mesh:
    def prepare(files, ids) -> None:
        path = files.agents_config(ids[NCC])
        doc = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**doc, "audit_checkpoint_s": checkpoint_s}))

    return start_mesh(tmp_path_factory.mktemp("checkpoints"), kafka, uuid.uuid4().hex[:6],
                      [HOTLINE], [NCC], prepare=prepare, partitions=1)


@pytest.fixture
def quiet(kafka, tmp_path_factory):
    m = mesh_with(tmp_path_factory, kafka, 2)
    yield m
    m.running.stop()


@pytest.fixture
def stopped(kafka, tmp_path_factory):
    m = mesh_with(tmp_path_factory, kafka, 3600)
    yield m
    m.running.stop()


def verify(mesh: Mesh):
    return CliRunner().invoke(cli, [
        "audit", "verify", "--domain", mesh.id(NCC), "--config",
        str(mesh.kafka.client_file()), "--directory", str(mesh.files.directory),
        "--anchor", str(mesh.files.anchor)])


def decide(mesh: Mesh) -> None:
    """RECORDS decisions of the domain (each consent is one: ConsentRecorded), all read back
    from its audit topic."""
    for n in range(RECORDS):
        mesh.consent(700 + n, HOTLINE)
    wait_until(lambda: len(mesh.audit_chains(NCC).get(0, [])) >= RECORDS, DEADLINE_S,
               f"{RECORDS} audit records of {mesh.id(NCC)}")


def confirmed(result) -> bool:
    return (result.exit_code == 0 and "UNCONFIRMED" not in result.output
            and f"partition 0: {RECORDS} records, chain intact, confirmed by a signed "
                "checkpoint" in result.output)


def test_the_last_decisions_before_a_quiet_spell_are_confirmed(quiet):
    decide(quiet)
    last = {}

    def fully_confirmed() -> bool:
        last["result"] = verify(quiet)
        return confirmed(last["result"])

    try:
        wait_until(fully_confirmed, DEADLINE_S, "every audit record confirmed by a checkpoint")
    except Exception:
        print(last.get("result") and last["result"].output)
        raise


def test_a_worker_stopped_with_sigterm_leaves_a_checkpoint_of_its_last_head(stopped):
    decide(stopped)
    code = stopped.running.agents[stopped.id(NCC)].stop()
    assert code == 0, stopped.running.agents[stopped.id(NCC)].tail(40)
    result = verify(stopped)
    assert confirmed(result), result.output
