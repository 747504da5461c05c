"""The package as a user installs it (issue 14, item 8): build the wheel, check that it holds
every file the code reads at run time, install it into a new virtual environment (not editable:
no source tree anywhere on its path), and from there run the CLI's worked example (agency keys, a
signed directory, seal and open) and start a gateway against the embedded broker.

Offline, and honest about what comes from where:
- the wheel is built from a copy of the sources by ``pip wheel --no-build-isolation --no-index``
  with this environment's setuptools (the ``test`` extra installs it), so nothing is downloaded
  and the repository gets no build/ or egg-info;
- the new environment is made by ``python -m venv --without-pip`` and the wheel installed into it
  by this environment's pip (``--python``, ``--no-deps --no-index``);
- its third-party dependencies (fastavro, cryptography, aiohttp, faust...) are this
  environment's, already installed: one ``.pth`` line puts this environment's site-packages
  *after* the new one's. Python does not run the ``.pth`` files of a folder added that way, so
  this environment's editable install of refmesh (a ``.pth`` hook pointing at the repository)
  stays off, and every refmesh module comes from the wheel (checked: ``__file__`` of each).
"""
from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from shutil import copytree, ignore_patterns

import pytest
import yaml

from devmesh.supervise import wait_until
from devmesh.tansu import free_port
from gateways.client import GatewayClient, health_report
from refmesh import samples

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = sorted({p.rstrip("*") for p in
                   PROJECT["tool"]["setuptools"]["packages"]["find"]["include"]})
# files under the packages that the code never reads: they stay in the repository
NOT_SHIPPED = ("gateways/Dockerfile", "gateways/web/screenshots/")
COORD, HOTLINE, SHELTER = "BH/GOV/NCCTIP", "BH/GOV/HOTLINE", "BH/GOV/SHELTER"
PASSPHRASE = "a synthetic passphrase for the wheel test"
#: the gateway start needs a broker: the embedded one is enough (the Apache Kafka half of the
#: integration tests runs the same gateway code from the source tree)
embedded_only = pytest.mark.parametrize("kafka", ["embedded"], indirect=True)


def run(*args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          **kw)
    if check:
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (as pip builds an sdist's)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("schemas", *PACKAGES):
        copytree(ROOT / folder, src / folder, symlinks=True,
                 ignore=ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--wheel-dir", work / "dist", src)
    [built] = (work / "dist").glob("referral_mesh-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new environment with the wheel installed, and this one's dependencies behind it."""
    env = tmp_path_factory.mktemp("venv") / "env"
    run(sys.executable, "-m", "venv", "--without-pip", env)
    run(sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "--quiet",
        "--no-deps", "--no-index", wheel)
    [own] = (env / "lib").glob("python3*/site-packages")
    (own / "zz_test_dependencies.pth").write_text("".join(
        f"{path}\n" for path in site.getsitepackages()))
    return env


def clean_env(home: Path, **extra: str) -> dict:
    """No PYTHONPATH, no REFMESH_* of the developer: only what the command is given."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            **extra}


def test_the_wheel_holds_the_contracts_and_every_file_read_at_run_time(wheel) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    contracts = sorted((ROOT / "schemas").rglob("*.avsc"))
    assert len(contracts) > 20
    with zipfile.ZipFile(wheel) as z:
        for path in contracts:  # the repository's schemas/, byte for byte
            shipped = "refmesh/contracts/" + str(path.relative_to(ROOT / "schemas"))
            assert z.read(shipped) == path.read_bytes(), shipped
    data = [str(p.relative_to(ROOT)) for folder in PACKAGES for p in (ROOT / folder).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
            and "contracts" not in p.relative_to(ROOT).parts]
    missing = [n for n in data if n not in names and not n.startswith(NOT_SHIPPED)]
    assert missing == [], "add them to [tool.setuptools.package-data] in pyproject.toml"
    assert "gateways/web/templates/signin.html" in names and "devmesh/sample_policy.yaml" in names
    assert not any(n.startswith(("tests/", "schemas/")) for n in names)


@embedded_only
def test_installed_from_the_wheel_the_cli_seals_and_opens_and_a_gateway_starts(
        venv, kafka, tmp_path) -> None:
    bin_ = venv / "bin"
    refmesh = bin_ / "refmesh"
    # every refmesh module comes from the wheel, none from the repository
    where = run(bin_ / "python", "-c", "import json, refmesh, refmesh.schemas as s, kafkaedge, "
                "gateways, agents, cli, devmesh; print(json.dumps([m.__file__ for m in "
                "(refmesh, s, kafkaedge, gateways, agents, cli, devmesh)]))",
                cwd=tmp_path, env=clean_env(tmp_path)).stdout
    assert all(f.startswith(str(venv)) for f in json.loads(where)), where
    assert str(ROOT) not in where

    # the worked example of docs/protocol.md: keys, a signed directory, seal and open
    keys, pub = tmp_path / "keys", tmp_path / "pub"
    pub.mkdir()
    env = clean_env(tmp_path, REFMESH_PASSPHRASE=PASSPHRASE, REFMESH_KEYSTORE=str(keys))
    for agency, domain in ((COORD, None), (HOTLINE, COORD), (SHELTER, COORD)):
        run(refmesh, "agency", "init", agency, "--name", f"{agency} (sample)", "--role",
            "CentralGovernmentOrganisation", "--country", "BH",
            *(("--domain", domain) if domain else ()), cwd=tmp_path, env=env)
    draft = tmp_path / "draft.json"
    run(refmesh, "directory", "init", "--coordinator", COORD, "--out", draft, cwd=tmp_path,
        env=env)
    run(refmesh, "directory", "add", draft, *sorted(keys.glob("*.member.json")), cwd=tmp_path,
        env=env)
    run(refmesh, "directory", "sign", draft, "--out", pub / "directory.bin", cwd=tmp_path,
        env=env)
    env.update(REFMESH_DIRECTORY=str(pub / "directory.bin"),
               REFMESH_ANCHOR=str(pub / "anchor.json"))
    referral = tmp_path / "referral.json"
    referral.write_text(json.dumps(samples.referral()))
    run(refmesh, "seal", "--from", HOTLINE, "--to", SHELTER, "--type", "referral", referral,
        "--out", tmp_path / "event.bin", cwd=tmp_path, env=env)
    opened = json.loads(run(refmesh, "open", "--as", SHELTER, tmp_path / "event.bin",
                            cwd=tmp_path, env=env).stdout)
    assert opened["type"] == "Referral" and opened["record"] == samples.referral()
    refused = run(refmesh, "open", "--as", COORD, tmp_path / "event.bin", check=False,
                  cwd=tmp_path, env=env)
    assert (refused.returncode, refused.stderr) == (
        1, "error: envelope rejected (wrong_recipient)\n")

    # a gateway on the embedded broker: its topics, then `refmesh gateway run`
    run(refmesh, "topics", "ensure", "--bootstrap", kafka.bootstrap, "--broker", "embedded",
        cwd=tmp_path, env=env)
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "agency": HOTLINE, "keystore": str(keys), "directory": str(pub / "directory.bin"),
        "anchor": str(pub / "anchor.json"), "bootstrap": kafka.bootstrap,
        "broker": "embedded", "database": str(tmp_path / "hotline.db"), "http_port": port}))
    token = "a-synthetic-api-token"
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [str(refmesh), "gateway", "run", "--config", str(config)], cwd=tmp_path,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**env, "REFMESH_API_TOKEN": token, "REFMESH_PARTITION_SECRET": "ab" * 16})
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy():
            assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
            return health_report(url)["ok"] is True

        wait_until(healthy, 60, "the gateway installed from the wheel to answer /healthz")
        client = GatewayClient(url, token)
        sent = client.submit({**samples.referral(), "referralId": "wheel-1",
                              "recipientAgency": SHELTER})
        assert sent["referralId"] == "wheel-1"
        assert [r["referral_id"] for r in client.outbox()] == ["wheel-1"]
        assert os.stat(tmp_path / "hotline.db").st_mode & 0o777 == 0o600
    finally:
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "gateway.log").read_text()
    assert b"Traceback" not in (tmp_path / "gateway.log").read_bytes()
