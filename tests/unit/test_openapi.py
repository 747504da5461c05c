"""The OpenAPI document describes exactly the routes the gateway serves."""
from __future__ import annotations

from gateways.api import create_api
from gateways.openapi import OPENAPI


def test_every_route_is_described_and_every_description_is_served():
    app = create_api(gateway=object())
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD"}
    described = {(method, path) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert served == described


def test_only_health_is_open_without_a_token():
    open_routes = [path for path, ops in OPENAPI["paths"].items()
                   for op in ops.values() if op.get("security") == []]
    assert open_routes == ["/healthz"]
    assert OPENAPI["security"] == [{"token": []}]
