"""TLS to HQ: verified against the CA bundle given with --ca, never switched off."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.hq.devices import add_device
from sync.hq.stores import open_store
from tests.sync_helpers import _init, cli, make_till, running_hq, utc_now


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _authority(root: Path, label: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(label))
        .issuer_name(_name(label))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    path = root / f"{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _server_cert(
    root: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("hq.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = root / "hq.crt", root / "hq.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_till_trusts_only_the_ca_it_is_given(tmp_path: Path) -> None:
    ca_path, ca_key, ca_cert = _authority(tmp_path, "chain-ca")
    stranger_ca, _, _ = _authority(tmp_path, "other-ca")
    tls = _server_cert(tmp_path, ca_key, ca_cert)
    url = f"sqlite:///{tmp_path}/hq.db"
    _init(url)
    hq = open_store(url)
    state = make_till(tmp_path, "till")
    try:
        with running_hq(url, tmp_path / "hq.log", tls=tls, ca=ca_path) as server:
            assert server.url.startswith("https://")
            token = add_device(hq, "S001", "T01", utc_now())["token"]
            for ca in ([], ["--ca", str(stranger_ca)]):
                code, answer = cli(state, "register", "--hq", server.url, "--token", token, *ca)
                assert (code, answer["error"]) == (1, "tls_error")
            code, answer = cli(
                state, "register", "--hq", server.url, "--token", token, "--ca", str(ca_path)
            )
            assert code == 0, answer
            code, answer = cli(state, "sync", "--ca", str(stranger_ca))
            assert (code, answer["error"]) == (1, "tls_error")
            code, summary = cli(state, "sync")  # the CA given at registration is remembered
            assert code == 0 and summary["acked_seq"] == 1
    finally:
        hq.close()
