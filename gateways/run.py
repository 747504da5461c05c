"""``python -m gateways.run --config FILE``: run one agency gateway (``refmesh gateway run``)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import yaml

from refmesh.errors import MeshError
from refmesh.settings import GatewaySettings, build


def load_settings(path: str, overrides: dict | None = None, cls=GatewaySettings):
    """Read a YAML settings file and build the frozen settings object (errors name the file)."""
    try:
        mapping = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise MeshError(f"settings file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise MeshError(f"settings file {path} is not valid YAML: {exc}") from None
    if isinstance(mapping, dict):
        mapping.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, mapping, source=path)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refmesh gateway run")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    configure_logging()
    from gateways.gateway import serve

    try:
        asyncio.run(serve(load_settings(args.config)))
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
