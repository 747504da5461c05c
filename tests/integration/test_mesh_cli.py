"""The operators' commands on a real broker: `refmesh broker`, `refmesh topics ensure`, and the
gateway's OpenAPI document."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

from click.testing import CliRunner
from kafka import KafkaAdminClient

from kafkaedge import profiles
from devmesh.tansu import port_is_free
from cli import cli
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from devmesh.sample_mesh import build, renamed
from refmesh import topology

ROOT = Path(__file__).resolve().parents[2]


def test_refmesh_broker_prints_its_address_and_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "cli", "broker"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "REFMESH_BOOTSTRAP=127.0.0.1:" in line
        bootstrap = line.split("REFMESH_BOOTSTRAP=")[1].split()[0]
        admin = KafkaAdminClient(**profiles.admin_config(profiles.EMBEDDED, bootstrap))
        admin.list_topics()
        admin.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert port_is_free(int(bootstrap.rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_topics_ensure_creates_every_mesh_topic_once(bootstrap, tmp_path):
    files = build(tmp_path, bootstrap, now_ms(), agencies=renamed(uuid.uuid4().hex[:6]),
                  scrypt_n=2**10)
    args = ["topics", "ensure", "--bootstrap", bootstrap, "--broker", "embedded",
            "--partitions", "3", "--directory", str(files.directory), "--anchor",
            str(files.anchor)]
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
    names = [name for name, _ in topology.mesh_topics(trusted)]
    # 8 agencies x (inbox, dead letters) + 2 domains x (inbox, dead letters, audit, one
    # changelog per table, the release state)
    assert len(names) == len(set(names)) == 8 * 2 + 2 * (4 + len(topology.TABLES) + 1)
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"{len(names)} topics present ({len(names)} created)" in first.output
    second = CliRunner().invoke(cli, args)
    assert f"{len(names)} topics present (0 created)" in second.output
    admin = KafkaAdminClient(**profiles.admin_config(profiles.EMBEDDED, bootstrap))
    try:
        described = admin.describe_topics(names)
    finally:
        admin.close()
    assert sorted(t["name"] for t in described) == sorted(names)
    assert {len(t["partitions"]) for t in described} == {3}
