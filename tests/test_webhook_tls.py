"""An https endpoint is sent to over TLS that checks the certificate against the URL's host name,
although the socket goes to the address that was resolved and checked (pinned): a receiver on
loopback with a certificate made here, trusted through SSL_CERT_FILE."""

import datetime
import http.server
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhooks import outbound

pytestmark = pytest.mark.unit


def certificate(tmp_path, name: str):
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
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_receiver(tmp_path):
    """An https server on loopback whose certificate names `served_name`; what it received."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    def start(served_name: str):
        cert_path, key_path = certificate(tmp_path, served_name)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server.server_address[1], cert_path

    servers = []
    yield start, received
    for server in servers:
        server.shutdown()
        server.server_close()


def test_it_sends_over_tls_checked_against_the_urls_host_name(tls_receiver, monkeypatch):
    start, received = tls_receiver
    name = socket.gethostname()  # in /etc/hosts, resolving to loopback (allowed here)
    port, cert_path = start(name)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # trust the receiver's own certificate

    answer = outbound.post(f"https://{name}:{port}/hook", body=b"{}", headers={}, timeout=5, allow_private=True)

    assert answer.status_code == 204
    assert received == [(f"{name}:{port}", b"{}")]


def test_it_refuses_a_certificate_for_another_name(tls_receiver, monkeypatch):
    start, received = tls_receiver
    port, cert_path = start("someone-else.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))

    with pytest.raises(ssl.SSLCertVerificationError):
        outbound.post(
            f"https://{socket.gethostname()}:{port}/hook", body=b"{}", headers={}, timeout=5, allow_private=True
        )
    assert received == []
