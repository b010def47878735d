"""Credentials and TLS against real Mosquitto listeners: clear errors and bounded retries."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Broker, DaemonProcess, Watcher, free_port

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

PASSWORD = "correct-horse-battery"
MakeConfig = Callable[..., tuple[Path, dict[str, Any]]]
StartDaemon = Callable[..., DaemonProcess]


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_ca(folder: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_server_cert(folder: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_path = make_ca(folder, "good-ca")
    _, _, wrong_path = make_ca(folder, "wrong-ca")
    cert, key = make_server_cert(folder, ca, ca_key)
    return {"ca": ca_path, "wrong_ca": wrong_path, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[Broker]:
    extra = f"cafile {pki['ca']}\ncertfile {pki['cert']}\nkeyfile {pki['key']}\n"
    broker = Broker(tmp_path_factory.mktemp("tls-broker"), extra=extra)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("auth-broker")
    passwords = folder / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "kiosk", PASSWORD], check=True, timeout=30)
    broker = Broker(folder, extra=f"password_file {passwords}\n", anonymous=False)
    broker.start()
    yield broker
    broker.stop()


def mqtt_section(port: int, **settings: Any) -> dict[str, Any]:
    return {"mqtt": {"port": port, "max_auth_failures": 2, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5, **settings}}


@pytest.mark.slow
def test_wrong_password_is_refused_clearly_then_given_up(
    make_config: MakeConfig, daemons: StartDaemon, auth_broker: Broker, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("not-the-password\n")
    path, _ = make_config(mqtt_section(auth_broker.port, username="kiosk", password_file=str(tmp_path / "pw")))
    proc = daemons(path)
    assert proc.wait(60) == 2
    log = proc.log_text()
    assert "refused the connection" in log and ("Bad user name or password" in log or "Not authorized" in log)
    assert "gave up after 2 attempts" in log
    assert "not-the-password" not in log


def test_right_password_from_a_file_connects(
    make_config: MakeConfig, daemons: StartDaemon, auth_broker: Broker, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    path, doc = make_config(mqtt_section(auth_broker.port, username="kiosk", password_file=str(tmp_path / "pw")))
    with watching(auth_broker, doc, username="kiosk", password=PASSWORD) as watcher:
        proc = daemons(path)
        wait_online(watcher, doc)
    assert proc.terminate() == 0


def test_password_from_a_systemd_credential_connects(
    make_config: MakeConfig, daemons: StartDaemon, auth_broker: Broker, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text(PASSWORD)
    path, doc = make_config(mqtt_section(auth_broker.port, username="kiosk", password_credential="mqtt-password"))
    with watching(auth_broker, doc, username="kiosk", password=PASSWORD) as watcher:
        proc = daemons(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
        wait_online(watcher, doc)
    assert proc.terminate() == 0
    assert PASSWORD not in proc.log_text()


def test_tls_with_the_wrong_ca_fails_clearly_then_gives_up(
    make_config: MakeConfig, daemons: StartDaemon, tls_broker: Broker, pki: dict[str, Path]
) -> None:
    path, _ = make_config(mqtt_section(tls_broker.port, tls={"enabled": True, "ca_file": str(pki["wrong_ca"])}))
    proc = daemons(path)
    assert proc.wait(60) == 2
    log = proc.log_text()
    assert "TLS handshake" in log and "certificate verify failed" in log
    assert "gave up after 2 attempts" in log


def test_tls_with_the_right_ca_connects(
    make_config: MakeConfig, daemons: StartDaemon, tls_broker: Broker, pki: dict[str, Path]
) -> None:
    path, doc = make_config(mqtt_section(tls_broker.port, tls={"enabled": True, "ca_file": str(pki["ca"])}))
    with watching(tls_broker, doc, ca_file=pki["ca"]) as watcher:
        proc = daemons(path)
        wait_online(watcher, doc)
    assert proc.terminate() == 0


@pytest.mark.slow
def test_unreachable_broker_is_retried_not_fatal(make_config: MakeConfig, daemons: StartDaemon) -> None:
    path, _ = make_config(mqtt_section(free_port()))  # nothing listens there
    proc = daemons(path)
    deadline = time.monotonic() + 60
    while proc.log_text().count("cannot reach broker") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.log_text().count("cannot reach broker") >= 3
    assert proc.alive()  # past max_auth_failures: an absent broker is not a misconfiguration
    assert proc.terminate() == 0


@contextlib.contextmanager
def watching(broker: Broker, doc: dict[str, Any], **auth: Any) -> Iterator[Watcher]:
    watcher = Watcher(broker.port, [f"portrait/{doc['device']['id']}/availability"], **auth)
    try:
        yield watcher
    finally:
        watcher.close()


def wait_online(watcher: Watcher, doc: dict[str, Any]) -> None:
    watcher.wait_for(lambda m: m.payload == b"online", 60, what=f"{doc['device']['id']} online")
