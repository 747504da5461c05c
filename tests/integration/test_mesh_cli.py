"""The operators' commands on a real broker: `refmesh broker`, `refmesh topics ensure`, and the
gateway's OpenAPI document."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kafka import KafkaAdminClient

from kafkaedge import profiles
from devmesh.tansu import port_is_free
from cli import cli
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from devmesh.sample_mesh import build, renamed
from refmesh import topology
from tests.integration.conftest import KINDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_refmesh_broker_prints_its_address_and_stops_on_ctrl_c_and_sigterm(kind, signum,
                                                                           tmp_path):
    """systemd, Docker and `timeout` stop a process with SIGTERM: the broker goes with it."""
    folder = tmp_path / "broker"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "broker", "--kind", kind, "--folder",
                             str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "REFMESH_BOOTSTRAP=127.0.0.1:" in line, proc.stderr.read()
        bootstrap = line.split("REFMESH_BOOTSTRAP=")[1].split()[0]
        security = {}
        if kind == "apache":  # the operator's files: client settings and the password
            assert "client.yaml" in proc.stdout.readline()
            client = yaml.safe_load((folder / "client.yaml").read_text())
            assert client["bootstrap"] == bootstrap and client["broker"] == "apache"
            name, password = (folder / "admin.env").read_text().strip().split("=", 1)
            assert (folder / "admin.env").stat().st_mode & 0o077 == 0
            security = {**client["security"], "sasl_plain_password": password}
            assert security.pop(profiles.PASSWORD_ENV) == name
        admin = KafkaAdminClient(**profiles.admin_config(profiles.PROFILES[kind], bootstrap,
                                                         security))
        admin.list_topics()
        admin.close()
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
        assert "broker stopped" in proc.stderr.read()
        assert port_is_free(int(bootstrap.rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_topics_ensure_creates_every_mesh_topic_once(kafka, tmp_path):
    files = build(tmp_path, kafka.bootstrap, now_ms(), agencies=renamed(uuid.uuid4().hex[:6]),
                  scrypt_n=2**10)
    args = ["topics", "ensure", "--config", str(kafka.client_file()), "--partitions", "3", "--directory", str(files.directory), "--anchor",
            str(files.anchor)]
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
    names = [name for name, _ in topology.mesh_topics(trusted)]
    # 8 agencies x (inbox, dead letters) + 2 domains x (inbox, dead letters, audit, release
    # audit, audit checkpoints, one changelog per table, the release state)
    assert len(names) == len(set(names)) == 8 * 2 + 2 * (5 + len(topology.TABLES) + 1)
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"{len(names)} topics present ({len(names)} created)" in first.output
    second = CliRunner().invoke(cli, args)
    assert f"{len(names)} topics present (0 created)" in second.output
    admin = KafkaAdminClient(**kafka.admin_config())
    try:
        described = admin.describe_topics(names)
    finally:
        admin.close()
    assert sorted(t["name"] for t in described) == sorted(names)
    assert {len(t["partitions"]) for t in described} == {3}
