"""Files and transport of a gateway (issue 14, item 4): its database and side files are created
0600; it refuses to start on a keystore, database or TLS key others may read, with one error line
naming the file and the fix; it serves HTTPS itself, and whenever browsers reach it over TLS
(its own, or a proxy's) cookies are Secure and every answer carries HSTS."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from click.testing import CliRunner

from cli import cli
from devmesh.testca import make_tls
from gateways import run as gateway_run
from gateways.client import GatewayClient, GatewayError
from gateways.gateway import Gateway
from gateways.run import application
from gateways.store import Store
from gateways.transport import HSTS, server_tls
from kafkaedge.loading import check_private, keystore_path, load_settings
from refmesh.errors import ConfigError
from refmesh.settings import GatewaySettings
from tests.unit.webfix import HOTLINE, NCC, mesh_files  # noqa: F401 (a fixture)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_the_database_and_its_wal_and_shm_files_are_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    with umask(0o022):  # the usual umask, which gave 0644 before
        store = Store(str(path), HOTLINE, NCC)
        try:
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)  # WAL mode: both side files are open now
            assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
        finally:
            store.close()


@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_file_its_group_or_others_may_use_is_refused(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(bits)
    with pytest.raises(ConfigError) as refused:
        check_private(path, "keystore", "the agency's private keys")
    assert f"mode {bits:04o}" in str(refused.value)
    assert f"run `chmod 600 {path}`" in str(refused.value)


@pytest.mark.parametrize("bits", [0o600, 0o400, 0o700])
def test_a_private_file_passes(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(bits)
    check_private(path, "keystore", "the agency's private keys")
    check_private(tmp_path / "missing", "keystore", "keys")  # whoever reads it says so


# --- a gateway of the sample mesh ---------------------------------------------------------------

@pytest.fixture
def settings(mesh_files, tmp_path, monkeypatch) -> GatewaySettings:  # noqa: F811
    for name, value in mesh_files.env.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings(mesh_files.gateway_config(HOTLINE), GatewaySettings)
    return dataclasses.replace(loaded, database=str(tmp_path / "gateway.db"), http_port=0)


def config_file(settings: GatewaySettings, path: Path) -> str:
    import yaml

    doc = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize("which", ["database", "-wal", "-shm", "keystore"])
def test_the_gateway_refuses_to_start_on_a_readable_file(settings, tmp_path, capsys,
                                                         which: str) -> None:
    Store(settings.database, HOTLINE, NCC).close()
    target = {"database": settings.database, "-wal": settings.database + "-wal",
              "-shm": settings.database + "-shm",
              "keystore": str(keystore_path(settings.keystore, settings.agency))}[which]
    Path(target).touch()
    before = mode(target)
    os.chmod(target, 0o644)
    try:
        with pytest.raises(ConfigError, match=f"run `chmod 600 {target}`"):
            Gateway(settings)
        # as an operator sees it: one error line, exit 2 (gateways.run and `refmesh gateway run`)
        config = config_file(settings, tmp_path / "gateway.yaml")
        assert gateway_run.main(["--config", config]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and target in lines[0], lines
        result = CliRunner().invoke(cli, ["gateway", "run", "--config", config])
        assert result.exit_code == 2
        assert result.stderr.splitlines() == lines
    finally:
        os.chmod(target, before)


def test_an_unreadable_tls_key_is_refused_with_the_fix(settings, tmp_path) -> None:
    tls = make_tls(tmp_path / "tls", name="gateway")
    tls.broker.chmod(0o640)
    served = dataclasses.replace(settings, tls_cert=str(tls.broker), tls_key=str(tls.broker))
    with pytest.raises(ConfigError, match=f"run `chmod 600 {tls.broker}`"):
        server_tls(served)
    tls.broker.chmod(0o600)
    with pytest.raises(ConfigError, match="tls_cert .* does not exist"):
        server_tls(dataclasses.replace(served, tls_cert=str(tmp_path / "none.pem")))
    (tmp_path / "junk.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match="cannot serve HTTPS with tls_cert"):
        server_tls(dataclasses.replace(served, tls_cert=str(tmp_path / "junk.pem")))


def test_tls_cert_and_tls_key_go_together(settings) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        dataclasses.replace(settings, tls_cert="gateway.pem")


# --- serving --------------------------------------------------------------------------------------

async def _serve(settings: GatewaySettings, visit):
    """Serve ``settings``' gateway as ``serve`` does (never started: no broker), on a free port,
    and await ``visit(url)``."""
    gateway = Gateway(settings)
    runner = web.AppRunner(application(gateway), access_log=None)
    await runner.setup()
    tls = server_tls(settings)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await visit(f"{'https' if tls else 'http'}://127.0.0.1:{port}", gateway)
    finally:
        await runner.cleanup()
        gateway.store.close()


async def _get(url: str, ca: Path | None = None) -> tuple[int, dict]:
    context = ssl.create_default_context(cafile=ca) if ca else None
    async with ClientSession() as session:
        async with session.get(url, ssl=context) as response:
            return response.status, response.headers.copy()


def test_https_with_secure_cookies_and_hsts(settings, tmp_path) -> None:
    tls = make_tls(tmp_path / "tls", name="gateway")
    served = dataclasses.replace(settings, tls_cert=str(tls.broker), tls_key=str(tls.broker))

    async def visit(url: str, gateway: Gateway):
        assert url.startswith("https://")
        status, headers = await _get(url + "/signin", tls.ca)
        assert status == 200 and headers["Strict-Transport-Security"] == HSTS
        cookies = headers.getall("Set-Cookie")
        assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies), cookies
        status, headers = await _get(url + "/v1/inbox", tls.ca)  # refused, and still HSTS
        assert status == 401 and headers["Strict-Transport-Security"] == HSTS
        loop = asyncio.get_running_loop()
        client = GatewayClient(url, gateway.api_token, ca_file=str(tls.ca))
        assert await loop.run_in_executor(None, client.inbox) == []
        untrusting = GatewayClient(url, gateway.api_token)  # the system's CAs: not the test CA
        with pytest.raises(GatewayError, match="no trusted TLS connection .* --ca-file"):
            await loop.run_in_executor(None, untrusting.inbox)

    asyncio.run(_serve(served, visit))


@pytest.mark.parametrize("proxy", [False, True])
def test_plain_http_marks_cookies_secure_and_sends_hsts_only_behind_a_tls_proxy(
        settings, proxy: bool) -> None:
    async def visit(url: str, _gateway: Gateway):
        assert url.startswith("http://")
        status, headers = await _get(url + "/signin")
        assert status == 200
        assert ("Strict-Transport-Security" in headers) is proxy
        cookies = headers.getall("Set-Cookie")
        assert cookies and all(("Secure" in c) is proxy for c in cookies), cookies
        # a header does not decide it: X-Forwarded-Proto is never read
        async with ClientSession() as session:
            async with session.get(url + "/signin",
                                   headers={"X-Forwarded-Proto": "http"}) as response:
                assert ("Strict-Transport-Security" in response.headers) is proxy

    asyncio.run(_serve(dataclasses.replace(settings, behind_tls_proxy=proxy), visit))
