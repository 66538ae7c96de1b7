"""TLS verification stays on: a self-signed loopback server is refused until its CA is trusted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.hooks.klar import KlarHook

pytestmark = pytest.mark.e2e

TOKEN = "tls-tok-Hq2m"
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "klar-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Status(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"total": "7", "lastBatchCount": "7"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps(
            {"conn_type": "klar", "host": f"https://127.0.0.1:{server.server_address[1]}", "password": TOKEN}
        ),
    )
    _Status.seen = []
    try:
        yield cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_untrusted_certificate_is_refused_at_once(tls_server: Path) -> None:
    sleeps: list[float] = []
    hook = KlarHook()
    hook.retry_policy = dataclasses.replace(hook.retry_policy, sleep=sleeps.append)
    with pytest.raises(KlarConfigurationError, match=r"could not be verified.*SSL_CERT_FILE"):
        hook.get_status("orders")
    assert sleeps == []  # not retried: a certificate does not fix itself
    assert _Status.seen == []
    ok, message = hook.test_connection()
    assert not ok
    assert "could not be verified" in message


def test_a_trusted_certificate_works(tls_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server))
    with KlarHook() as hook:
        assert hook.get_status("orders").total == 7
    assert _Status.seen == ["/orders/status"]
