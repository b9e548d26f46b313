"""A real OpenSSH server for the git source's ssh tests: Debian's ``sshd`` on 127.0.0.1.

:class:`Sshd` runs ``sshd -D -e -f CONFIG`` as root on a free port, with a configuration file,
a host key and an ``authorized_keys`` of its own in the test's folder: public keys only (no PAM,
no password, no keyboard-interactive), root may log in with the one key it was given, and
nothing else is served (no forwarding, no pty, no sftp). Git over ssh runs ``git-upload-pack
'/path/app.git'`` in the login's shell, so a bare repository anywhere on this host is served at
``ssh://root@127.0.0.1:PORT/path/app.git``. :meth:`Sshd.known_hosts` writes the line a client
needs to trust the host key; :func:`key_pair` makes a client's key with ``ssh-keygen``.

Readiness is polled on the port (the server's ``SSH-2.0`` banner); :meth:`Sshd.stop` ends the
server by its own pid, and removes ``/run/sshd`` (which sshd needs) if it made it and it is empty.
A missing ``sshd`` fails the test with the Debian package to install.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests import support
from tests.support import processes
from tests.support.git import free_port
from tests.support.polling import eventually

SSHD = "/usr/sbin/sshd"
# sshd's privilege-separation folder (compiled in; the systemd unit makes it as RuntimeDirectory).
PRIVSEP_DIR = Path("/run/sshd")


def require_sshd() -> None:
    support.require_root()
    for binary, package in ((SSHD, "openssh-server"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client")):
        support.require_binary(binary, package)


def key_pair(folder: Path, name: str) -> Path:
    """A new ed25519 key without a passphrase, ``folder/name`` (0600) and ``folder/name.pub``."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True,
                   timeout=60, capture_output=True)  # fmt: skip
    return key


def public_key(key: Path) -> str:
    """The ``TYPE BASE64`` of a key's ``.pub`` file (without its comment)."""
    kind, blob = key.with_name(f"{key.name}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


class Sshd:
    """``sshd`` on 127.0.0.1 that lets root in with ``authorized`` (a private key's path) only."""

    def __init__(self, folder: Path, authorized: Path) -> None:
        require_sshd()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.host_key = key_pair(folder, "host_ed25519")
        # restrict: no pty, no forwarding of any kind; git needs none of them.
        (folder / "authorized_keys").write_text(f"restrict {public_key(authorized)} deploy\n")
        self.config = folder / "sshd_config"
        self.config.write_text(self._configuration())
        self.made_privsep_dir = not PRIVSEP_DIR.exists()
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        checked = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True, timeout=60,
                                 check=False)  # fmt: skip
        assert checked.returncode == 0, f"sshd -t -f {self.config}: {checked.stderr}"
        self.log = folder / "sshd.log"
        sink = self.log.open("ab")
        # -D: stay in the foreground (its pid is ours to stop); -e: log to stderr (the log file).
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=sink, stderr=sink,
                                        stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})  # fmt: skip
        sink.close()
        try:
            eventually(self._answers, timeout=30, what=f"sshd to listen on 127.0.0.1:{self.port} (log: {self.log})")
        except BaseException:
            self.stop()
            raise

    def _configuration(self) -> str:
        # StrictModes off: the test's files live under /tmp, whose mode (1777) sshd would refuse.
        return "\n".join([
            f"ListenAddress 127.0.0.1:{self.port}", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}", "AuthorizedPrincipalsFile none",
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "AuthenticationMethods publickey", "PermitRootLogin prohibit-password", "AllowUsers root",
            "StrictModes no", "PidFile none", "PrintMotd no", "PermitUserEnvironment no", "AllowTcpForwarding no",
            "AllowAgentForwarding no", "X11Forwarding no", "PermitTTY no", "LogLevel VERBOSE", "",
        ])  # fmt: skip

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"sshd exited with {self.process.returncode}: {self.log.read_text()}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
                return connection.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def url(self, bare: Path) -> str:
        """The ``ssh://`` URL of a bare repository on this host."""
        return f"ssh://root@127.0.0.1:{self.port}{bare}"

    def known_hosts(self, path: Path) -> Path:
        """A known_hosts file at ``path`` that trusts this server's host key (and nothing else)."""
        path.write_text(f"[127.0.0.1]:{self.port} {public_key(self.host_key)}\n")
        return path

    def stop(self) -> None:
        processes.stop(self.process)
        if self.made_privsep_dir:
            with contextlib.suppress(OSError):  # not empty: in use by another sshd
                PRIVSEP_DIR.rmdir()
