"""An outsider with write access against the record of decisions (THREATS.md 5): it cuts the
tail off a domain's audit chain and appends a record of its own, on the real brokers.

The domain's agents sign their chain heads (refmesh.audit.checkpoint, here every 2 records) to
refmesh.domain.<D>.audit-checkpoints. The outsider has no refmesh keys, only the right to write
topics: it writes a copy of the domain's chain without its last records, with a record it made
appended (a valid hash chain: anyone can compute SHA-256), to a scratch domain's audit topic,
together with the domain's genuine checkpoints and one of its own that claims to cover the
appended record. ``refmesh audit verify --signed-by`` names the cut, the appended record as an
unconfirmed tail and the forged checkpoint, and exits non-zero; the genuine chain verifies.
"""
from __future__ import annotations

import os
import uuid

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from devmesh.supervise import wait_until
from kafkaedge.audit_reader import read_checkpoints
from kafkaedge.loading import now_ms
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import audit, codec, topology
from tests.integration.meshfix import Mesh, start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
DEADLINE_S = 90
RECORDS = 5


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    def every_two(files, ids) -> None:
        path = files.agents_config(ids[NCC])
        doc = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**doc, "audit_checkpoint_every": 2}))

    m = start_mesh(tmp_path_factory.mktemp("audit-attacks"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC], prepare=every_two, partitions=1)
    yield m
    m.running.stop()


def verify(mesh: Mesh, domain: str, *more: str):
    return CliRunner().invoke(cli, [
        "audit", "verify", "--domain", domain, "--config", str(mesh.kafka.client_file()),
        "--directory", str(mesh.files.directory), "--anchor", str(mesh.files.anchor), *more])


def test_a_cut_tail_an_appended_record_and_a_forged_checkpoint_are_named(mesh):
    domain = mesh.id(NCC)
    for n in range(RECORDS):  # each consent is a decision of the domain: ConsentRecorded
        mesh.consent(900 + n, HOTLINE)
    chain_topic = topology.audit(domain)

    def covered() -> bool:
        cps = [codec.decode(c, expect="AuditCheckpoint")[1]
               for c in read_checkpoints(mesh.consumer_config(), domain, timeout=10)]
        return any(c["seq"] >= RECORDS and c["chain"] == chain_topic for c in cps)

    wait_until(covered, DEADLINE_S, f"a signed checkpoint of {RECORDS} audit records")
    genuine = verify(mesh, domain)
    assert genuine.exit_code == 0, genuine.output
    assert "TRUNCATED" not in genuine.output and "FORGED" not in genuine.output
    chain = mesh.audit_chains(NCC)[0]
    checkpoints = read_checkpoints(mesh.consumer_config(), domain)
    top = max(codec.decode(c, expect="AuditCheckpoint")[1]["seq"] for c in checkpoints)
    assert top == len(chain) >= RECORDS, (top, len(chain))

    # the outsider: keep all but the last two records, append one of its own
    kept = chain[:-2]
    appended, head = audit.append(audit.head_after(kept[-1]), at=now_ms(), domain=domain,
                                  event_id=str(uuid.uuid4()), decision="Forwarded",
                                  sender=mesh.id(HOTLINE), recipient="BH/GOV/ELSEWHERE")
    _, real = codec.decode(checkpoints[-1], expect="AuditCheckpoint")
    claim = codec.encode("AuditCheckpoint", {  # the domain's public key id, no private key
        **real, "seq": head.seq, "headHash": head.hash, "at": now_ms(),
        "signature": os.urandom(64)})
    scratch = f"BH/GOV/SCRATCH-{uuid.uuid4().hex[:6].upper()}"
    ensure_topics(mesh.kafka.admin_config(), [TopicSpec(topology.audit(scratch), 1),
                                              TopicSpec(topology.audit_checkpoints(scratch), 1)])
    producer = mesh.producer()
    for data in [*kept, appended]:
        producer.send(topology.audit(scratch), value=data, partition=0).get(timeout=10)
    for data in [*checkpoints, claim]:
        producer.send(topology.audit_checkpoints(scratch), value=data,
                      partition=0).get(timeout=10)
    producer.close()

    result = verify(mesh, scratch, "--signed-by", domain)
    assert result.exit_code != 0, result.output
    out = result.output
    assert (f"partition 0: TRUNCATED: truncated: the chain ends at seq {len(kept) + 1} but a "
            f"signed checkpoint covers {len(chain)} records") in out, out
    assert "partition 0: FORGED: checkpoint at seq" in out and \
        "the signature does not verify" in out, out
    last_genuine = max(s for s in (codec.decode(c, expect="AuditCheckpoint")[1]["seq"]
                                   for c in checkpoints) if s <= len(kept))
    tail = len(kept) + 1 - last_genuine
    assert (f"partition 0: UNCONFIRMED: unconfirmed tail of {tail} record"
            f"{'s' if tail != 1 else ''} after checkpoint seq {last_genuine}") in out, out
