"""A small client for a gateway's HTTP API (used by the CLI, the demo and the tests), and the
reader of any refmesh process's /healthz."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from refmesh.errors import MeshError


class GatewayError(MeshError):
    """The gateway refused a request or cannot be reached; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 0, field: str | None = None) -> None:
        self.status, self.field = status, field
        super().__init__(message)


def _sender(sender: str | None) -> str:
    return "" if sender is None else "?" + urllib.parse.urlencode({"sender": sender})


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The TLS context for an https:// gateway: the system's trusted CAs, or only the CA
    certificate(s) in ``ca_file`` (PEM) when given; None (urllib's default) without one."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise GatewayError(f"cannot read the CA file {ca_file} ({exc}); give a PEM file of "
                           "the CA that signed the gateway's certificate") from None


class GatewayClient:
    """``ca_file``: a PEM file of the CA(s) to trust for an https:// gateway (default: the
    system's)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0,
                 ca_file: str | None = None) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        self.ca_file, self._tls = ca_file, tls_context(ca_file)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self._tls) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                doc = json.loads(exc.read())
            except ValueError:
                doc = {"error": exc.reason}
            if exc.code == 401:
                raise GatewayError(f"the gateway at {self.url} refused the API token; check "
                                   "REFMESH_API_TOKEN", 401) from None
            where = f" (field {doc['field']})" if doc.get("field") else ""
            raise GatewayError(f"{doc.get('error', exc.reason)}{where}", exc.code,
                               doc.get("field")) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise GatewayError(f"no trusted TLS connection to {self.url} ({reason}); give "
                                   "the CA that signed the gateway's certificate (the CLI's "
                                   "--ca-file, env REFMESH_CA_FILE)") from None
            raise GatewayError(f"no gateway answers at {self.url} ({reason}); is "
                               "'refmesh gateway run' running there?") from None

    def submit(self, referral: dict) -> dict:
        return self._call("POST", "/v1/referrals", referral)

    def inbox(self) -> list[dict]:
        return self._call("GET", "/v1/inbox")["referrals"]

    def outbox(self) -> list[dict]:
        return self._call("GET", "/v1/outbox")["referrals"]

    def show(self, referral_id: str, sender: str | None = None) -> dict:
        """``sender``: the referral's sender, needed only when two referrals share the id."""
        return self._call("GET", f"/v1/referrals/{referral_id}{_sender(sender)}")

    def set_status(self, referral_id: str, state: str, reason: str | None = None,
                   sender: str | None = None) -> dict:
        body = {"state": state} if reason is None else {"state": state, "reason": reason}
        return self._call("POST", f"/v1/referrals/{referral_id}/status{_sender(sender)}", body)

    def record_consent(self, consent: dict) -> dict:
        return self._call("POST", "/v1/consents", consent)

    def withdraw_consent(self, consent_id: str, channel: str = "InPerson") -> dict:
        return self._call("POST", f"/v1/consents/{consent_id}/withdraw", {"channel": channel})

    def consents(self) -> list[dict]:
        return self._call("GET", "/v1/consents")["consents"]

    def erasures(self) -> list[dict]:
        return self._call("GET", "/v1/erasures")["erasures"]

    def health(self) -> dict:
        """/healthz as {"ok": bool, "problems": [...]} (503 is an answer too)."""
        return health_report(self.url, ca_file=self.ca_file)

    def healthy(self) -> bool:
        return self.health()["ok"] is True


def health_report(url: str, timeout: float = 2.0, ca_file: str | None = None) -> dict:
    """``url``/healthz of a gateway or of a domain's agents, as {"ok": bool, "problems": [...]};
    a 503 is an answer too, and no answer is reported as a problem rather than raised.
    ``ca_file``: the CA to trust for an https:// gateway (GatewayClient)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout,
                                    context=tls_context(ca_file)) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a 503 names the problems
        try:
            return json.loads(exc.read())
        except ValueError:
            return {"ok": False, "problems": [f"HTTP {exc.code} without a health report"]}
    except (OSError, ValueError) as exc:  # no answer, or not one from refmesh
        return {"ok": False, "problems": [f"no health report ({exc})"]}
