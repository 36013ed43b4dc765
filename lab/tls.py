"""The lab's HTTPS listener: a lab CA and a server certificate generated at
`up`, served to the load balancers as a pillar file the lab writes under
.lab/ (never in git: it holds a private key).

    .lab/tls/ca.pem, ca.key          the lab CA (the key 0600; the directory 0700)
    .lab/pillar/top.sls              the `labgen` pillar env's top: lb-* get lab_tls
    .lab/pillar/lab_tls.sls          listener `https_5` (VIP of vhid 5, port 443,
                                     pool web_a) with `tls: certificate, key` (0600)

The master serves .lab/pillar as a second pillar environment (`labgen`,
lab/saltcfg.py) beside pillar/lab: Salt reads one top.sls per environment,
so the generated file brings its own top instead of an entry in
pillar/lab/top.sls, which does not name a file that exists only after
`up`.  The listener merges into `lb:pairs:<pair>:haproxy:listeners`
(Salt's default `smart` pillar merge is recursive).  `redirect_http` is
off: port 80 on the VIP of vhid 5 is the `http_5` listener's.

`issue()` makes further server certificates from the same CA (the tests'
certificate change)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import yaml

from lab import LAB_DIR, PILLAR

TLS_DIR = LAB_DIR / "tls"
PILLAR_DIR = LAB_DIR / "pillar"
PILLAR_ENV = "labgen"
SLS = "lab_tls"
CA_CERT = TLS_DIR / "ca.pem"
CA_KEY = TLS_DIR / "ca.key"
LISTENER = "https_5"
VHID = 5
PORT = 443
POOL = "web_a"
SERVER_NAME = "web.lab.example.test"  # the certificate's name; clients --resolve it to the VIP
DAYS = 30


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes | str) -> None:
    """Write a file that is 0600 from its first byte."""
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _pem_cert(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca() -> tuple[str, str]:
    """A new lab CA: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lb lab CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def issue(name: str = SERVER_NAME, ca: tuple[str, str] | None = None) -> tuple[str, str, int]:
    """A server certificate for `name` signed by the lab CA (default: the
    one in .lab/tls): (certificate PEM, key PEM, serial number)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_pem, ca_key_pem = ca or (CA_CERT.read_text(), CA_KEY.read_text())
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key), serial


class _Literal(str):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|"))


def pair_name() -> str:
    return next(iter(yaml.safe_load(PILLAR.read_text())["lb"]["pairs"]))


def pillar_text(certificate: str, key: str) -> str:
    """The text of lab_tls.sls for this certificate and key."""
    listener = {
        "vhid": VHID,
        "port": PORT,
        "mode": "http",
        "balance": "roundrobin",
        "pool": POOL,
        "tls": {"certificate": _Literal(certificate), "key": _Literal(key), "redirect_http": False},
    }
    data = {"lb": {"pairs": {pair_name(): {"haproxy": {"listeners": {LISTENER: listener}}}}}}
    head = "# Generated by `python -m lab up` (lab/tls.py); not in git: it holds a private key.\n"
    return head + yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False)


TOP = f"""# Generated by `python -m lab up` (lab/tls.py): the lab's HTTPS listener.
{PILLAR_ENV}:
  'lb-*':
    - {SLS}
"""


def write_pillar() -> int:
    """A new lab CA and server certificate, and the pillar files that serve
    them.  Returns the certificate's serial number."""
    _private_dir(TLS_DIR)
    _private_dir(PILLAR_DIR)
    ca = make_ca()
    _write_private(CA_CERT, ca[0])
    _write_private(CA_KEY, ca[1])
    cert, key, serial = issue(ca=ca)
    _write_private(PILLAR_DIR / "top.sls", TOP)
    _write_private(PILLAR_DIR / f"{SLS}.sls", pillar_text(cert, key))
    return serial
