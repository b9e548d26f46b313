"""Real git for the git source's tests: repositories, servers on 127.0.0.1, and signing keys.

* :class:`Upstream`: a bare repository (what the controller fetches: by path, ``git://`` or
  ``http://``) and a working clone that commits and pushes to it;
* :class:`GitDaemon`: ``git daemon`` serving a folder of bare repositories on 127.0.0.1;
* :class:`HttpBackend`: ``git http-backend`` behind a small HTTP server on 127.0.0.1 that wants
  HTTP basic auth with one token, and counts the requests it served (a fetch is seen here);
* :func:`ssh_signer` and :class:`GpgSigner`: keys made by ``ssh-keygen`` and ``gpg --batch``.

Every git here runs without the user's or the system's configuration. Whatever starts a process
stops it (``stop``, by its own pid; the gpg agent by its home folder).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.polling import eventually


def require_git() -> None:
    for binary, package in (("git", "git"), ("ssh-keygen", "openssh-client"), ("gpg", "gnupg")):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing (Debian package {package})", pytrace=False)


def environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A git environment without the user's configuration, with an author."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "tester@example.test",
        "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "tester@example.test",
        **(extra or {}),
    }  # fmt: skip


def git(cwd: Path, *args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


class Upstream:
    """A bare repository ``<root>/<name>.git`` and a working clone that pushes to it (branch main)."""

    def __init__(self, root: Path, name: str = "app") -> None:
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = environment(self.home)
        self.bare = root / "served" / f"{name}.git"
        self.bare.mkdir(parents=True)
        git(self.bare, "init", "--quiet", "--bare", "--initial-branch=main", env=self.env)
        # What git daemon and http-backend want before they serve a repository.
        git(self.bare, "config", "http.receivepack", "false", env=self.env)
        (self.bare / "git-daemon-export-ok").touch()
        self.work = root / "work"
        git(root, "init", "--quiet", "--initial-branch=main", str(self.work), env=self.env)
        git(self.work, "remote", "add", "origin", str(self.bare), env=self.env)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def remove(self, path: str) -> None:
        (self.work / path).unlink()

    def commit(self, message: str, *, sign: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> str:
        """Commit everything (``sign``: the ``-c`` settings that sign it) and push; the new commit's id."""
        given = {**self.env, **(env or {})}
        git(self.work, "add", "--all", env=given)
        settings = [part for setting in sign for part in ("-c", setting)]
        git(self.work, *settings, "commit", "--quiet", "--allow-empty", *(["-S"] if sign else []), "-m", message,
            env=given)  # fmt: skip
        git(self.work, "push", "--quiet", "origin", "HEAD:refs/heads/main", env=given)
        return git(self.work, "rev-parse", "HEAD", env=given).strip()

    def push_object(self, raw: bytes) -> str:
        """A commit object given whole (a forged signature, say) made the branch's tip."""
        done = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=self.bare, input=raw,
                              env=self.env, capture_output=True, timeout=60, check=True)  # fmt: skip
        sha = done.stdout.decode().strip()
        git(self.bare, "update-ref", "refs/heads/main", sha, env=self.env)
        return sha

    def raw(self, sha: str) -> bytes:
        return subprocess.run(["git", "cat-file", "commit", sha], cwd=self.bare, env=self.env, capture_output=True,
                              timeout=60, check=True).stdout  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GitDaemon:
    """``git daemon`` on 127.0.0.1 serving the folder of bare repositories ``base``."""

    def __init__(self, base: Path, log: Path) -> None:
        self.port = free_port()
        self.url_base = f"git://127.0.0.1:{self.port}"
        sink = log.open("ab")
        self.process = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}", f"--base-path={base}",
             "--informative-errors", "--verbose", str(base)],
            stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, env=environment(base),
        )  # fmt: skip
        sink.close()
        eventually(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() or True,
                   timeout=10, what="git daemon to listen")  # fmt: skip

    def stop(self) -> None:
        processes.stop(self.process)


class _Backend(http.server.BaseHTTPRequestHandler):
    server: _BackendServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, body: bytes) -> None:
        self.server.count(self.headers.get("Authorization") or "")
        if self.headers.get("Authorization") != self.server.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {**environment(self.server.base), "GIT_PROJECT_ROOT": str(self.server.base), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": self.headers.get("Content-Type") or "", "CONTENT_LENGTH": str(len(body)),
               "REMOTE_USER": "token", "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": self.headers.get("Git-Protocol") or ""}  # fmt: skip
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, _, content = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class _BackendServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    base: Path
    expected: str
    seen: list[str]
    lock: threading.Lock

    def count(self, authorization: str) -> None:
        with self.lock:
            self.seen.append(authorization)


class HttpBackend:
    """``git http-backend`` over HTTP on 127.0.0.1, for the holder of ``user:token`` only."""

    def __init__(self, base: Path, user: str, token: str) -> None:
        self.server = _BackendServer(("127.0.0.1", 0), _Backend)
        self.server.base = base
        self.server.expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.server.seen, self.server.lock = [], threading.Lock()
        self.url_base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def requests(self) -> list[str]:
        """The Authorization header of each request served so far (empty when none was sent)."""
        with self.server.lock:
            return list(self.server.seen)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ssh_signer(folder: Path, name: str = "signer") -> tuple[Path, Path]:
    """An ed25519 key made by ssh-keygen, and an allowed-signers file naming it: (key, allowed)."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True,
                   timeout=60, capture_output=True)  # fmt: skip
    allowed = folder / f"{name}.allowed"
    allowed.write_text(f"{name}@example.test {(folder / f'{name}.pub').read_text().strip()}\n")
    return key, allowed


def ssh_signing(key: Path) -> tuple[str, ...]:
    return ("gpg.format=ssh", f"user.signingkey={key}")


class GpgSigner:
    """A gpg key made with ``gpg --batch`` in a private home, and its public keyring file."""

    def __init__(self, folder: Path, name: str = "signer") -> None:
        self.home = folder / f"gnupg-{name}"
        self.home.mkdir(mode=0o700)
        self.email = f"{name}@example.test"
        self.env = {**environment(folder), "GNUPGHOME": str(self.home)}
        subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", f"{name} <{self.email}>",
                        "ed25519", "sign", "never"], env=self.env, check=True, timeout=120, capture_output=True)  # fmt: skip
        self.keyring = folder / f"{name}.gpg"
        exported = subprocess.run(["gpg", "--batch", "--export", self.email], env=self.env, check=True, timeout=60,
                                  capture_output=True).stdout  # fmt: skip
        self.keyring.write_bytes(exported)

    def signing(self) -> tuple[str, ...]:
        return ("gpg.format=openpgp", f"user.signingkey={self.email}")

    def stop(self) -> None:
        """The agent that signing started, by its home folder."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], env=self.env, timeout=30,
                           check=False, capture_output=True)  # fmt: skip
