"""Run a mesh written by ``sample_mesh.build``: the domains' agents and the agencies' gateways as
child processes, with an API client per gateway. Used by the demo, the drills and the tests."""
from __future__ import annotations

from pathlib import Path

import yaml

from gateways.client import GatewayClient, health_report
from devmesh.sample_mesh import MeshFiles
from devmesh.supervise import Proc, ProcessError, wait_until
from devmesh.tansu import free_port


class RunningMesh:
    """``ca_file``: the CA that signed the gateways' certificates, for those that serve HTTPS
    (``tls_cert`` in their settings)."""

    def __init__(self, files: MeshFiles, log_dir: Path, ca_file: Path | None = None) -> None:
        self.files, self.log_dir = files, Path(log_dir)
        self.ca_file = ca_file
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.gateways: dict[str, Proc] = {}
        self.agents: dict[str, Proc] = {}

    def start_agents(self, domain: str, worker_id: str = "1") -> Proc:
        """Start a worker of the domain's agents, kept in ``agents`` under the domain's id (worker
        "1") or ``<domain>-w<worker_id>`` (the others, see ``worker_config``)."""
        key = domain if worker_id == "1" else f"{domain}-w{worker_id}"
        proc = Proc(f"agents-{key}", "agents.run",
                    ["--config", str(self.worker_config(domain, worker_id))], self.files.env,
                    self.log_dir).start()
        self.agents[key] = proc
        return proc

    def worker_config(self, domain: str, worker_id: str = "1") -> Path:
        """The settings of a worker of the domain's agents: the sample's for worker "1"; for
        another, a copy (written once) with its own worker_id, data_dir and web port, in the
        same consumer group."""
        base = self.files.agents_config(domain)
        path = base.with_name(f"{base.stem}-w{worker_id}.yaml")
        if worker_id == "1" or path.exists():
            return base if worker_id == "1" else path
        config = yaml.safe_load(base.read_text())
        config.update(worker_id=worker_id, data_dir=f"{config['data_dir']}-w{worker_id}",
                      web_port=free_port())
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        return path

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

    def wait_agents_ready(self, domain: str, timeout: float = 90.0,
                          worker_id: str = "1") -> None:
        """Wait until a worker of the domain's agents answers 200 on /healthz: it holds its
        partitions of the domain inbox with its tables restored (refmesh.health)."""
        key = domain if worker_id == "1" else f"{domain}-w{worker_id}"
        proc, url = self.agents[key], self.agents_url(domain, worker_id)
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

    def agents_url(self, domain: str, worker_id: str = "1") -> str:
        """Where a worker of the domain's agents serves /healthz (``web_port``)."""
        path = self.worker_config(domain, worker_id)
        cfg = yaml.safe_load(path.read_text())
        if not cfg.get("web_port"):
            raise ProcessError(f"{path} sets no web_port, so the agents of {domain} serve no "
                               "/healthz; set one")
        return f"http://127.0.0.1:{cfg['web_port']}"

    def client(self, agency: str) -> GatewayClient:
        cfg = yaml.safe_load(self.files.gateway_config(agency).read_text())
        scheme = "https" if cfg.get("tls_cert") else "http"
        return GatewayClient(f"{scheme}://127.0.0.1:{cfg['http_port']}",
                             self.files.token(agency),
                             ca_file=None if self.ca_file is None else str(self.ca_file))

    def stop(self) -> None:
        for proc in [*self.gateways.values(), *self.agents.values()]:
            proc.stop()

    def __enter__(self) -> "RunningMesh":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
