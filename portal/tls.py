"""Corral's own TLS for local use: kubectl sends a kubeconfig's token only over TLS, so `make run`
serves HTTPS too (``PORTAL_TLS_PORT``, default 8443) with a certificate from a private CA made on
first start under ``var/tls/`` (kept, mode 0600 for keys).  Kubeconfigs embed that CA.  In
production put Corral behind your TLS terminator and set ``PORTAL_EXTERNAL_URL`` (and
``PORTAL_TLS_CA_FILE`` if its CA is not a public one)."""

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=825)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write(path, data, private=False):
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)


def ensure_local_tls(directory, hosts=("127.0.0.1", "localhost", "::1")):
    """(ca.crt, server.crt, server.key) under ``directory``, made once and then reused."""
    directory = Path(directory)
    ca_crt, crt, key_path = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    if ca_crt.exists() and crt.exists() and key_path.exists():
        return ca_crt, crt, key_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corral local CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(key_path, _key_pem(key), private=True)
    _write(crt, cert.public_bytes(pem) + ca.public_bytes(pem))
    _write(ca_crt, ca.public_bytes(pem))
    return ca_crt, crt, key_path


def daphne_endpoint(host, port, cert, key):
    """daphne's ``-e`` description of a TLS listener (twisted's ssl: endpoint)."""
    def quoted(value):
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    return f"ssl:port={port}:interface={quoted(host)}:privateKey={quoted(key)}:certKey={quoted(cert)}"
