"""A gateway's web page in one process for unit tests: a real ``Gateway`` on the sample mesh
(keys, signed directory, signed policy, SQLite store) that is never started (no broker), the
API app with the web page mounted, a fixed clock, and a synchronous client over aiohttp's test
server. Referrals "arrive" by calling the store as the inbox consumer does."""
from __future__ import annotations

import asyncio
import dataclasses
import re
from html import unescape
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher

from devmesh import sample_mesh
from gateways.api import create_api
from gateways.gateway import Gateway
from kafkaedge.loading import now_ms
from kafkaedge.loading import load_settings
from refmesh.settings import GatewaySettings
from gateways.web import mount
from refmesh import receive, samples

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
PASSWORD = "correct horse battery staple"
# Argon2id with small costs, so that tests stay fast; the gateway uses argon2-cffi's defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DIGEST = re.compile(r'name="digest" value="([^"]+)"')


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclasses.dataclass
class Page:
    status: int
    text: str
    headers: dict
    url: str

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, "no CSRF token on the page"
        return unescape(found.group(1))

    @property
    def digest(self) -> str:
        found = DIGEST.search(self.text)
        assert found, "no preview digest on the page"
        return unescape(found.group(1))


class Client:
    """A browser-like client (its own cookies, redirects followed) of ``server``."""

    def __init__(self, server: TestServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server, self.loop = server, loop

        async def start():
            return ClientSession(cookie_jar=CookieJar(unsafe=True))

        self.session = loop.run_until_complete(start())

    def _page(self, method: str, path: str, **kw) -> Page:
        async def call():
            async with self.session.request(method, self.server.make_url(path), **kw) as r:
                return Page(r.status, await r.text(), dict(r.headers), str(r.url))
        return self.loop.run_until_complete(call())

    def get(self, path: str, **kw) -> Page:
        return self._page("GET", path, **kw)

    def post(self, path: str, data, **kw) -> Page:
        return self._page("POST", path, data=data, **kw)

    def cookie(self, name: str) -> str | None:
        for c in self.session.cookie_jar:
            if c.key == name:
                return c.value
        return None

    def set_cookie(self, name: str, value: str) -> None:
        self.session.cookie_jar.update_cookies({name: value},
                                               response_url=self.server.make_url("/"))

    def signin(self, username: str = "amal", password: str = PASSWORD) -> Page:
        page = self.get("/signin")
        return self.post("/signin", {"csrf": page.csrf, "username": username,
                                     "password": password, "next": "/inbox"})

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())


class WebFix:
    """One agency's gateway with its web page, a user ``amal`` and clients."""

    def __init__(self, files: sample_mesh.MeshFiles, agency: str, root: Path, clock: Clock,
                 **settings) -> None:
        loaded = load_settings(files.gateway_config(agency), GatewaySettings)
        self.settings = dataclasses.replace(loaded, database=str(root / "gateway.db"),
                                            **settings)
        self.files, self.agency, self.clock = files, agency, clock
        self.gateway = Gateway(self.settings)
        self.app = create_api(self.gateway)
        self.web = mount(self.app, self.gateway, clock=clock, hasher=FAST_HASHER)
        # amal supervises (the whole inbox and outbox: referrals "arrive" and are submitted
        # here straight through the gateway, by nobody's account); the roles' own limits are
        # tested in test_web_roles.py
        self.web.accounts.add_user("amal", PASSWORD, clock(), role="supervisor")
        self.clients: list[Client] = []
        self.loop = asyncio.new_event_loop()
        self.server = TestServer(self.app)
        self.loop.run_until_complete(self.server.start_server())

    def client(self) -> Client:
        c = Client(self.server, self.loop)
        self.clients.append(c)
        return c

    def signed_in(self, username: str = "amal") -> Client:
        c = self.client()
        assert c.signin(username).status == 200
        return c

    def consent(self, n: int = 1, **over) -> dict:
        """A consent recorded at this gateway (in force now) for person ``n``."""
        consent = samples.consent(n, controller=self.agency, valid_from=self.clock() - 1000)
        consent.update(recipientRoles=["CentralGovernmentOrganisation", "NGO"],
                       dataCategories=["Identity", "Demographics", "SupportNeeds",
                                       "VictimContext", "ReferralDetails"])
        consent.update(over)
        return self.gateway.record_consent(consent)

    def arrive(self, n: int = 1, sender: str | None = None, **over) -> dict:
        """A referral from ``sender`` (the hotline, or at the hotline the shelter) arrives here
        through the policy domain."""
        sender = sender or (SHELTER if self.agency == HOTLINE else HOTLINE)
        referral = samples.referral(referral_id=f"ref-{n}-{self.clock()}", sender=sender,
                                    recipient=self.agency, created_at=self.clock(), n=n)
        referral.update(over)
        assert deliver(self.gateway, f"event-{n}", "Referral", NCC, referral,
                       self.clock()).refused is None
        return referral

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.loop.run_until_complete(self.server.close())
        self.loop.close()
        self.web.accounts.close()
        self.gateway.store.close()


def deliver(gateway: Gateway, event_id: str, record_type: str, signer: str, record: dict,
            now: int) -> receive.Changes:
    """An opened event reaches ``gateway``'s store as its inbox hands it over."""
    return gateway.store.receive(receive.Event(event_id, record_type, signer, record),
                                 receive.Parties.of(gateway.directory(), gateway.settings.agency),
                                 now)


@pytest.fixture(scope="module")
def mesh_files(tmp_path_factory) -> sample_mesh.MeshFiles:
    return sample_mesh.build(tmp_path_factory.mktemp("webmesh"), "127.0.0.1:9", now_ms(),
                             first_port=21000, scrypt_n=2**10)


def open_web(files, agency, tmp_path, monkeypatch, clock=None, **settings) -> WebFix:
    for name, value in files.env.items():
        monkeypatch.setenv(name, value)
    return WebFix(files, agency, tmp_path, clock or Clock(now_ms()), **settings)


@pytest.fixture
def hotline(mesh_files, tmp_path, monkeypatch):
    fix = open_web(mesh_files, HOTLINE, tmp_path, monkeypatch)
    yield fix
    fix.close()


@pytest.fixture
def shelter(mesh_files, tmp_path, monkeypatch):
    fix = open_web(mesh_files, SHELTER, tmp_path, monkeypatch)
    yield fix
    fix.close()
