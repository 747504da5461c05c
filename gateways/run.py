"""``python -m gateways.run --config FILE``: run one agency gateway (``refmesh gateway run``)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from kafkaedge.loading import configure_logging, load_settings
from refmesh.errors import MeshError
from refmesh.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refmesh gateway run")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    configure_logging()
    from gateways.gateway import serve

    try:
        asyncio.run(serve(load_settings(args.config, GatewaySettings)))
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
