"""Certificates and keys for one sandbox control plane, generated with `cryptography`.

Layout under <sandbox>/pki/:
  ca.crt, ca.key             the cluster CA (signs everything below, and CSRs via the controller-manager)
  apiserver.crt/.key         serving certificate for 127.0.0.1 / localhost / kubernetes.default...
  sa.key, sa.pub             service-account token signing pair
  <user>.crt/.key            client certificates: admin (system:masters), controller-manager,
                             scheduler, front-proxy-client
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)

# Client identities: file stem -> (common name = user, organization = group).
CLIENTS = {
    "admin": ("corral-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # kube-apiserver's identity towards aggregated API servers (requestheader authentication).
    "front-proxy-client": ("front-proxy-client", None),
}


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _private_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are fast to generate and accepted by every Kubernetes component.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


class PKI:
    def __init__(self, directory: Path):
        self.dir = directory

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.dir / "ca.crt", self.dir / "ca.key")

    @property
    def apiserver(self) -> KeyPair:
        return KeyPair(self.dir / "apiserver.crt", self.dir / "apiserver.key")

    @property
    def service_account_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client(self, stem: str) -> KeyPair:
        return KeyPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")

    def generate(self, cluster_name: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

        ca_key = _private_key()
        # A common name holds at most 64 characters; a sandbox name up to 63 (a DNS label) must fit.
        ca_name = _name(f"corral-sandbox-{cluster_name}"[:61].rstrip("-") + "-ca")
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.ca.cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        _write(self.ca.key, _key_pem(ca_key), private=True)

        self._issue(
            self.apiserver, ca_cert, ca_key, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"),
                x509.DNSName("kubernetes.default.svc.cluster.local"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
            ],
        )
        for stem, (user, group) in CLIENTS.items():
            self._issue(self.client(stem), ca_cert, ca_key, _name(user, group), ExtendedKeyUsageOID.CLIENT_AUTH)

        # Service-account tokens are signed with RSA, the algorithm every client library verifies.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(self.service_account_key, _key_pem(sa_key), private=True)
        _write(
            self.service_account_pub,
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def issue_serving(self, pair: KeyPair, common_name: str, hosts: list[str]) -> None:
        """A serving certificate for `hosts` (IP addresses or DNS names) signed by this sandbox's CA:
        for servers beside the control plane that kube-apiserver calls (e.g. Cluster API's webhooks)."""
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        sans = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        pair.cert.parent.mkdir(parents=True, exist_ok=True)
        self._issue(pair, ca_cert, ca_key, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)

    def _issue(self, pair: KeyPair, ca_cert, ca_key, subject, usage, sans=None) -> None:
        key = _private_key()
        builder = (
            _builder(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=True, content_commitment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(key), private=True)
