"""TLS listeners: the pillar's `tls` (certificate, key, redirect_http) is
validated with pillar paths, rendered as `bind ... ssl crt <combined PEM>`,
and the PEM is a 0600 secret file.  Real `haproxy -c` on the result."""

import copy
import datetime
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import lb_render
import lb_render_haproxy
import lb_topology

LISTENER = "lb:pairs:edge:haproxy:listeners:https_5"


def make_cert(cn="www.example.test", days=30, key_type="ec", expired=False):
    """(certificate PEM, key PEM) of a fresh self-signed certificate."""
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
        if expired
        else (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return cert_pem, key_pem


@pytest.fixture(scope="module")
def pem():
    return make_cert()


def with_tls(raw, tls, port=443, vhid=5, mode="http"):
    raw = copy.deepcopy(raw)
    raw["pairs"]["edge"]["haproxy"]["listeners"]["https_5"] = {
        "vhid": vhid,
        "port": port,
        "mode": mode,
        "balance": "source",
        "pool": "web_a",
        "tls": tls,
    }
    return raw


def errors(raw):
    return [(e.path, e.message) for e in lb_topology.check(raw).errors]


def test_a_tls_listener_is_rendered_with_its_combined_pem(lab_raw, pem, tmp_path):
    cert, key = pem
    model = lb_topology.load(with_tls(lab_raw, {"certificate": cert, "key": key}))
    lst = model["pairs"]["edge"]["haproxy"]["listeners"]["https_5"]
    assert lst["tls"] == {"certificate": cert, "key": key, "redirect_http": False}
    files = lb_render.render_node(model, "lb-a", "Debian")
    pem_path = "/etc/haproxy/certs/haproxy_198.18.2.5_443.pem"
    assert files[pem_path].mode == "0600" and files[pem_path].secret
    assert files[pem_path].content == cert.strip() + "\n" + key.strip() + "\n"
    cfg = files["/etc/haproxy/haproxy.cfg"].content
    assert f"    bind 198.18.2.5:443 ssl crt {pem_path}\n" in cfg
    assert "redirect scheme https" not in cfg
    # FreeBSD: under /usr/local/etc/haproxy/certs
    bsd = lb_render.render_node(model, "lb-b", "FreeBSD")
    assert "/usr/local/etc/haproxy/certs/haproxy_198.18.2.5_443.pem" in bsd
    # the preview never shows the key
    red = lb_render.preview(model, "lb-a", "Debian", redact=True)[pem_path]
    assert "PRIVATE KEY" not in red and cert.strip() in red and "<redacted>" in red


def test_redirect_http_adds_a_port_80_bind_that_redirects(lab_raw, pem, tmp_path):
    cert, key = pem
    raw = with_tls(lab_raw, {"certificate": cert, "key": key, "redirect_http": True}, vhid=4)
    # vhid 4's VIP has no port-80 listener in the lab pillar
    model = lb_topology.load(raw)
    lines = lb_render_haproxy.listener_lines(
        model["pairs"]["edge"]["haproxy"]["listeners"]["https_5"], model["pairs"]["edge"]["haproxy"]["pools"]["web_a"], "/c"
    )
    assert lines[:5] == [
        "bind 198.18.2.4:443 ssl crt /c/haproxy_198.18.2.4_443.pem",
        "bind 198.18.2.4:80",
        "mode http",
        "balance source",
        "http-request redirect scheme https code 301 unless { ssl_fc }",
    ]


def test_the_rendered_tls_config_passes_the_real_haproxy_check(lab_raw, tmp_path):
    cert, key = make_cert(key_type="rsa")
    model = lb_topology.load(with_tls(lab_raw, {"certificate": cert, "key": key, "redirect_http": True}, vhid=4))
    pair = model["pairs"]["edge"]
    files = lb_render_haproxy.haproxy_files(
        model,
        pair,
        "lb-a",
        "Debian",
        params={"haproxy_certs_dir": str(tmp_path / "certs"), "haproxy_config": str(tmp_path / "haproxy.cfg")},
    )
    (tmp_path / "certs").mkdir()
    for path, f in files.items():
        with open(path, "w") as fh:
            fh.write(f.content)
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    r = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr, r.stderr
    # and a key that is not the certificate's is refused by HAProxy too (what
    # the validation below catches before a minion sees it)
    other_cert, _ = make_cert(key_type="rsa")
    with open(tmp_path / "certs" / "haproxy_198.18.2.4_443.pem", "w") as fh:
        fh.write(other_cert + key)
    r = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0


def _encrypted_key():
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    ).decode()


@pytest.mark.parametrize(
    "case,path,reason",
    [
        ("not_a_mapping", LISTENER + ":tls", "must be a mapping"),
        ("unknown_key", LISTENER + ":tls:chain", "unknown key"),
        ("tcp_mode", LISTENER + ":tls", "TLS is terminated on HTTP listeners; this one has mode tcp"),
        ("no_certificate", LISTENER + ":tls:certificate", "must be the certificate (and its chain) in PEM form"),
        ("certificate_not_pem", LISTENER + ":tls:certificate", "text without a PEM block"),
        ("certificate_holds_the_key", LISTENER + ":tls:certificate", "holds a private key; give it under tls:key"),
        ("certificate_bad_base64", LISTENER + ":tls:certificate", "is not valid base64"),
        ("certificate_truncated", LISTENER + ":tls:certificate", "no complete PEM block"),
        ("certificate_garbage_der", LISTENER + ":tls:certificate", "is not a readable X.509 certificate"),
        ("no_key", LISTENER + ":tls:key", "must be the private key in PEM form"),
        ("key_is_a_certificate", LISTENER + ":tls:key", "must be a private key block"),
        ("two_keys", LISTENER + ":tls:key", "exactly one private key block"),
        ("encrypted_key", LISTENER + ":tls:key", "is encrypted"),
        ("key_of_another_certificate", LISTENER + ":tls:key", "does not belong to the certificate"),
        ("redirect_not_bool", LISTENER + ":tls:redirect_http", "must be true or false"),
        ("redirect_on_port_80", LISTENER + ":tls:redirect_http", "the listener itself is on port 80"),
        ("redirect_port_taken", LISTENER + ":tls:redirect_http", "198.18.2.5:80 is already bound by listener 'http_5'"),
    ],
)
def test_bad_tls_is_refused_with_its_pillar_path(lab_raw, pem, case, path, reason):
    cert, key = pem
    other_cert, other_key = make_cert("other.example.test")
    tls = {"certificate": cert, "key": key}
    port, mode = 443, "http"
    if case == "not_a_mapping":
        tls = "yes"
    elif case == "unknown_key":
        tls["chain"] = cert
    elif case == "tcp_mode":
        mode = "tcp"
    elif case == "no_certificate":
        del tls["certificate"]
    elif case == "certificate_not_pem":
        tls["certificate"] = "/etc/ssl/certs/www.pem"
    elif case == "certificate_holds_the_key":
        tls["certificate"] = cert + key
    elif case == "certificate_bad_base64":
        tls["certificate"] = "-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n"
    elif case == "certificate_truncated":
        tls["certificate"] = cert.replace("-----END CERTIFICATE-----", "")
    elif case == "certificate_garbage_der":
        tls["certificate"] = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"
    elif case == "no_key":
        del tls["key"]
    elif case == "key_is_a_certificate":
        tls["key"] = other_cert
    elif case == "two_keys":
        tls["key"] = key + other_key
    elif case == "encrypted_key":
        tls["key"] = _encrypted_key()
    elif case == "key_of_another_certificate":
        tls["key"] = other_key
    elif case == "redirect_not_bool":
        tls["redirect_http"] = "yes"
    elif case == "redirect_on_port_80":
        tls["redirect_http"] = True
        port = 80
        # free the VIP's port 80 so the only error is the one under test
        lab_raw = copy.deepcopy(lab_raw)
        del lab_raw["pairs"]["edge"]["haproxy"]["listeners"]["http_5"]
    elif case == "redirect_port_taken":
        tls["redirect_http"] = True
    found = errors(with_tls(lab_raw, tls, port=port, mode=mode))
    assert any(p == path and reason in m for p, m in found), found


def test_an_rsa_key_in_traditional_form_is_accepted(lab_raw):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert "BEGIN RSA PRIVATE KEY" in key_pem
    assert errors(with_tls(lab_raw, {"certificate": cert_pem, "key": key_pem})) == []


def test_a_chain_is_accepted_and_an_expired_certificate_is_a_warning(lab_raw):
    cert, key = make_cert(expired=True)
    ca, _ = make_cert("ca.example.test")
    report = lb_topology.check(with_tls(lab_raw, {"certificate": cert + ca, "key": key}))
    assert report.errors == []
    assert [(w.path, w.message.split(" (")[0][:10]) for w in report.warnings if "tls" in w.path] == [
        (LISTENER + ":tls:certificate", "expired on")
    ]


def test_listener_without_tls_is_unchanged(lab_model):
    for lst in lab_model["pairs"]["edge"]["haproxy"]["listeners"].values():
        assert lst["tls"] is None
