"""``python -m gateways.run --config FILE``: run one agency gateway (``refmesh gateway run``).

The gateway process's composition root: the ``Gateway`` (gateways/gateway.py) with its HTTP API
(gateways/api.py) and, with the ``web`` setting, the case workers' web page (gateways/web/),
served until SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from gateways.api import create_api
from gateways.gateway import Gateway
from gateways.transport import add_hsts, server_tls
from gateways.web import mount
from kafkaedge.loading import configure_logging, load_settings
from refmesh.errors import ConfigError, MeshError
from refmesh.settings import GatewaySettings


def application(gateway: Gateway):
    """The gateway's aiohttp application: the API at /v1, the web page at / (setting ``web``),
    HSTS on every answer when browsers reach it over TLS."""
    app = create_api(gateway)
    if gateway.settings.web:
        mount(app, gateway)  # the case workers' web page at /, beside the API's /v1
    add_hsts(app, gateway.settings)
    return app


async def serve(settings: GatewaySettings) -> None:
    """Run a gateway with its HTTP API (HTTPS with ``tls_cert``) until SIGINT or SIGTERM."""
    tls = server_tls(settings)
    gateway = Gateway(settings)
    app = application(gateway)
    gateway.start()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        gateway.stop()
        raise ConfigError(f"cannot listen on {settings.http_host}:{settings.http_port} "
                          f"({exc.strerror}); choose another http_port") from None
    scheme = "http" if tls is None else "https"
    print(f"gateway {settings.agency} listening on {scheme}://{settings.http_host}:"
          f"{settings.http_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refmesh gateway run")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        asyncio.run(serve(load_settings(args.config, GatewaySettings)))
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
