"""A throw-away certificate authority for the local Apache Kafka broker's TLS listener, and for
a gateway serving HTTPS in the tests (``name="gateway"``: its ``tls_cert`` and ``tls_key``).

Kafka reads PEM directly (``ssl.keystore.type=PEM``): the broker gets one file holding its
unencrypted PKCS#8 key and its certificate chain, and clients get the CA certificate. All of it
is made here with ``cryptography``: no keytool, no openssl. For tests, the demo and drills
only; a real mesh uses its own PKI.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kafkaedge.loading import write_file

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate (clients' ssl_cafile, the broker's truststore)
    broker: Path  # the server's key and certificate chain, PEM (mode 0600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "refmesh test CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
             days: int = 30, name: str = "broker") -> TlsFiles:
    """Write ``ca.pem`` and ``<name>.pem`` (key + chain) into ``folder``; the server certificate
    names ``hosts`` (IP addresses and DNS names) as subject alternative names."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("refmesh test CA"))
               .issuer_name(_name("refmesh test CA")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - _DAY).not_valid_after(now + days * _DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                            False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(_name(f"refmesh {name}"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + days * _DAY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder.mkdir(parents=True, exist_ok=True)
    return TlsFiles(ca=write_file(folder / "ca.pem", ca_pem, mode=0o644),
                    broker=write_file(folder / f"{name}.pem",
                                      key_pem + cert.public_bytes(pem) + ca_pem))


def spki_sha256(pem_file: Path) -> str:
    """The base64 SHA-256 of the first certificate's public key (SubjectPublicKeyInfo) in
    ``pem_file``: what Chromium's --ignore-certificate-errors-spki-list pins."""
    cert = x509.load_pem_x509_certificates(Path(pem_file).read_bytes())[0]
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
