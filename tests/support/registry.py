"""Local registries for tests: Debian's ``docker-registry`` on 127.0.0.1, in four set-ups.

The one registry launcher of the test suite (the image-store, native-engine and docker-backend
tests all start their registries here):

- :func:`start_plain`: plain HTTP, no auth;
- :func:`start_basic`: plain HTTP with htpasswd (bcrypt) Basic auth (dockerd talks plain HTTP to
  registries on 127.0.0.0/8, and refuses a CA it was not configured with);
- :func:`start_tls_basic`: HTTPS with a CA made by openssl, htpasswd (bcrypt) Basic auth;
- :func:`start_token`: Bearer token auth, with :class:`TokenServer` (PyJWT RS256, ``x5c`` header)
  running in this process on its own port.

Each registry gets free ports, its own directory (config, storage, certificates, log) and is
stopped by its pid (:meth:`Registry.stop`; use the context manager or a fixture finaliser). Images
are pushed with ``skopeo copy`` from an OCI layout (:meth:`Registry.push`), or by whoever holds
the image (dockerd pushes its own). Start-up is awaited by polling the ``/v2/`` endpoint; a
registry that exits early fails at once with the end of its log. Nothing here listens anywhere
but 127.0.0.1.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.server
import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
import typing
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests import support
from tests.support import images, polling, processes

USERNAME = "testuser"
PASSWORD = "testpass"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Registry:
    """A running ``docker-registry`` process and what a client needs to reach it."""

    kind: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    ca_cert: Path | None = None
    cert_dir: Path | None = None  # certs.d-style root: <cert_dir>/<host>/ca.crt
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def ref(self, repo_tag: str) -> str:
        return f"{self.host}/{repo_tag}"

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (for tampering tests)."""
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def push(
        self,
        layout: images.OciLayout,
        name: str,
        repo_tag: str,
        *,
        all_platforms: bool = True,
        fmt: str | None = None,
    ) -> None:
        """``skopeo copy oci:<layout>:<name> docker://<host>/<repo_tag>`` with this registry's auth."""
        skopeo = support.require_binary("skopeo", "skopeo")
        argv = [skopeo, "--insecure-policy", "copy", "--quiet"]
        if all_platforms:
            argv.append("--all")
        if fmt:
            argv += ["--format", fmt]
        if self.cert_dir is not None:
            argv += ["--dest-cert-dir", str(self.cert_dir / self.host)]
        else:
            argv.append("--dest-tls-verify=false")
        if self.username:
            argv += ["--dest-creds", f"{self.username}:{self.password}"]
        argv += [f"oci:{layout.path}:{name}", f"docker://{self.ref(repo_tag)}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"skopeo push of {name} to {self.ref(repo_tag)} failed: {proc.stderr.strip()}")

    def stop(self) -> None:
        processes.stop(self.process)
        if self.token_server is not None:
            self.token_server.stop()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ssl_context(ca_cert: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else ssl.create_default_context()


class RegistryExited(AssertionError):
    """The registry process ended while it was awaited: no use polling any longer."""


def _wait_ready(registry: Registry, timeout: float = 20.0) -> None:
    url = f"{registry.scheme}://{registry.host}/v2/"
    context = _ssl_context(registry.ca_cert) if registry.scheme == "https" else None

    def answers() -> bool:
        if registry.process.poll() is not None:
            raise RegistryExited(f"docker-registry exited early: {registry.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            return True  # 401 means it is up, asking for credentials
        # Anything else (refused, reset) is an OSError: not up yet, polled again.

    try:
        polling.eventually(answers, timeout=timeout, what=f"docker-registry on {registry.host} to answer")
    except RegistryExited:
        raise
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its log ends with: {registry.log.read_text()[-2000:]}") from None


def _start(kind: str, directory: Path, config: dict[str, typing.Any], port: int, **fields: typing.Any) -> Registry:
    binary = support.require_binary("docker-registry", "docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    base: dict[str, typing.Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    base["http"].update(config.pop("http", {}))
    base.update(config)
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(base, indent=1))  # JSON is YAML
    log = (directory / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    registry = Registry(kind=kind, directory=directory, port=port, process=process, **fields)
    try:
        _wait_ready(registry)
    except BaseException:
        registry.stop()
        raise
    return registry


def start_plain(directory: Path) -> Registry:
    """A plain-HTTP registry without auth."""
    return _start("plain", directory, {}, free_port())


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server cert for 127.0.0.1/localhost, by openssl: (ca.crt, server.crt, server.key)."""
    openssl = support.require_binary("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
        "-subj", "/CN=reconciler-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "30", "-extfile", "ext.cnf")  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


def _htpasswd(directory: Path) -> Path:
    """An htpasswd file (bcrypt) granting :data:`USERNAME` with :data:`PASSWORD`."""
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = directory / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"{USERNAME}:{hashed}\n")
    return htpasswd


def start_basic(directory: Path) -> Registry:
    """Plain HTTP + htpasswd Basic auth (:data:`USERNAME` / :data:`PASSWORD`)."""
    config = {"auth": {"htpasswd": {"realm": "basic-realm", "path": str(_htpasswd(directory))}}}
    return _start("basic", directory, config, free_port(), username=USERNAME, password=PASSWORD)


def start_tls_basic(directory: Path) -> Registry:
    """HTTPS (CA by openssl) + htpasswd Basic auth; ``cert_dir/<host>/ca.crt`` holds only the CA."""
    ca, cert, key = make_ca(directory / "tls")
    port = free_port()
    cert_dir = directory / "certs.d"
    (cert_dir / f"127.0.0.1:{port}").mkdir(parents=True)
    (cert_dir / f"127.0.0.1:{port}" / "ca.crt").write_bytes(ca.read_bytes())
    config = {
        "http": {"tls": {"certificate": str(cert), "key": str(key)}},
        "auth": {"htpasswd": {"realm": "basic-realm", "path": str(_htpasswd(directory))}},
    }
    return _start(
        "tls-basic",
        directory,
        config,
        port,
        scheme="https",
        ca_cert=ca,
        cert_dir=cert_dir,
        username=USERNAME,
        password=PASSWORD,
    )


class TokenServer:
    """A minimal Docker token service: GET /token?service=&scope= → RS256 JWT with an x5c header.

    Valid Basic credentials get the actions they ask for; anonymous callers get ``pull`` only;
    wrong credentials get 401. ``requests`` records (scope, user) of every token issued.
    """

    def __init__(self, directory: Path, *, service: str = "test-registry", issuer: str = "test-issuer") -> None:
        self.service, self.issuer = service, issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler-test-token-signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / "signer.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[tuple[str, str]] = []
        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3:
                actions = parts[2].split(",")
                if not subject:
                    actions = [a for a in actions if a == "pull"]
                access.append({"type": parts[0], "name": parts[1], "actions": actions})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [base64.b64encode(der).decode()]})

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                query = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(query.query)
                subject = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if (user, password) != (USERNAME, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    subject = user
                scopes = params.get("scope", [])
                server.requests.append((" ".join(scopes), subject))
                body = json.dumps({"token": server.issue(subject, scopes), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_token(directory: Path) -> Registry:
    """Bearer-token auth on plain HTTP with a :class:`TokenServer` in this process."""
    token_server = TokenServer(directory / "token")
    config = {
        "auth": {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
    }
    try:
        return _start(
            "token",
            directory,
            config,
            free_port(),
            username=USERNAME,
            password=PASSWORD,
            token_server=token_server,
        )
    except BaseException:
        token_server.stop()
        raise
