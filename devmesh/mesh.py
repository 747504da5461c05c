"""Run a mesh written by ``sample_mesh.build``: the domains' agents and the agencies' gateways as
child processes, with an API client per gateway. Used by the demo, the drills and the tests."""
from __future__ import annotations

from pathlib import Path

import yaml

from gateways.client import GatewayClient, health_report
from devmesh.sample_mesh import MeshFiles
from devmesh.supervise import Proc, ProcessError, wait_until


class RunningMesh:
    def __init__(self, files: MeshFiles, log_dir: Path) -> None:
        self.files, self.log_dir = files, Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.gateways: dict[str, Proc] = {}
        self.agents: dict[str, Proc] = {}

    def start_agents(self, domain: str) -> Proc:
        proc = Proc(f"agents-{domain}", "agents.run",
                    ["--config", str(self.files.agents_config(domain))], self.files.env,
                    self.log_dir).start()
        self.agents[domain] = proc
        return proc

    def start_gateway(self, agency: str, wait: bool = True) -> Proc:
        proc = Proc(f"gateway-{agency}", "gateways.run",
                    ["--config", str(self.files.gateway_config(agency))], self.files.env,
                    self.log_dir).start()
        self.gateways[agency] = proc
        if wait:
            self.wait_healthy(agency)
        return proc

    def wait_healthy(self, agency: str, timeout: float = 60.0) -> None:
        proc, client = self.gateways[agency], self.client(agency)

        def ready():
            proc.check_alive()
            return client.healthy()

        wait_until(ready, timeout, f"gateway {agency} to answer /healthz")

    def wait_agents_ready(self, domain: str, timeout: float = 90.0) -> None:
        """Wait until the domain's agents answer 200 on /healthz: they hold their partitions of
        the domain inbox with their tables restored (refmesh.health)."""
        proc, url = self.agents[domain], self.agents_url(domain)
        last = {}

        def ready():
            proc.check_alive()
            last.update(health_report(url))
            return last["ok"] is True

        try:
            wait_until(ready, timeout, f"agents of {domain} to answer 200 on {url}/healthz")
        except ProcessError as exc:
            if not last.get("problems"):
                raise
            raise ProcessError(f"{exc}; /healthz last said: {'; '.join(last['problems'])}"
                               ) from None

    def agents_url(self, domain: str) -> str:
        """Where the domain's agents serve /healthz (``web_port`` of their settings)."""
        cfg = yaml.safe_load(self.files.agents_config(domain).read_text())
        if not cfg.get("web_port"):
            raise ProcessError(f"{self.files.agents_config(domain)} sets no web_port, so the "
                               f"agents of {domain} serve no /healthz; set one")
        return f"http://127.0.0.1:{cfg['web_port']}"

    def client(self, agency: str) -> GatewayClient:
        cfg = yaml.safe_load(self.files.gateway_config(agency).read_text())
        return GatewayClient(f"http://127.0.0.1:{cfg['http_port']}", self.files.token(agency))

    def stop(self) -> None:
        for proc in [*self.gateways.values(), *self.agents.values()]:
            proc.stop()

    def __enter__(self) -> "RunningMesh":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
