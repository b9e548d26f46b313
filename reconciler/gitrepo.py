"""Git, through the ``git`` program: one branch mirrored in a private repository, a commit's folder
written into a private tree, and a commit's signature checked against the keys allowed.

Where it sits: at the bottom, beside :mod:`reconciler.sources` (the standard library, errors and
files only); the controller's git source (:mod:`reconciler.controller.git_source`) drives it. It
must not parse manifests, log, or put a secret on a command line: a token reaches git as an
``http.<url>.extraHeader`` in git's environment (``GIT_CONFIG_*``; a process's environment is
readable only by its owner), a deploy key's path as ``RECONCILER_SSH_KEY`` in that environment
too, which ssh expands itself (``IdentityFile=${RECONCILER_SSH_KEY}`` in ``GIT_SSH_COMMAND``). The
ssh host key must already be known (``StrictHostKeyChecking=yes``, as ``git clone`` does by
default): against the known_hosts file given, else the user's; nothing is learnt on first use.

Every git runs with an environment built here from nothing (no inherited ``GIT_TRACE_CURL``,
which would print the header; no user or system configuration, whose ``insteadOf`` could send
the token elsewhere), only the transports of :data:`PROTOCOLS` (``ext::`` would run a command),
no hooks, symlinks written as plain files (a link to ``/etc/shadow`` committed as a manifest
must not be read through), and a deadline past which its whole process group is killed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from reconciler import errors, files

# Transports git may use; ``ext::`` and ``fd::`` are left out on purpose.
PROTOCOLS = "file:git:http:https:ssh"
FETCH_TIMEOUT = 300.0
LOCAL_TIMEOUT = 120.0
# What is kept of a git's output: subjects and error lines, never a whole stream.
OUTPUT_LIMIT = 64 * 1024
# The ref the fetched tip of the branch is kept under, in the private mirror.
TIP = "refs/reconciler/tip"
SUBJECT_LIMIT = 200
_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$|^[A-Za-z0-9.-]+:[^/:][^:]*$")
_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# The lines git ends a failed fetch over ssh with, whatever the cause.
_GIT_BOILERPLATE = frozenset(
    {"fatal: Could not read from remote repository.", "Please make sure you have the correct access rights",
     "and the repository exists."}
)  # fmt: skip


class GitError(errors.ReconcilerError):
    """A git command failed; the message says which and why (never a secret)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Signers:
    """Whose signatures count: an ssh allowed-signers file, or a gpg keyring (exported public keys)."""

    kind: Literal["ssh", "gpg"]
    file: Path


@dataclasses.dataclass(frozen=True, slots=True)
class Remote:
    """A branch of a repository, the folder of manifests in it, and how to log in."""

    url: str
    branch: str = "main"
    path: str = "."
    # Kept out of repr too: the deploy key's path is shown nowhere.
    ssh_key: Path | None = dataclasses.field(default=None, repr=False)
    # The host keys trusted (ssh's known_hosts format); None: the user's (``~/.ssh/known_hosts``).
    known_hosts: Path | None = None
    # ``TOKEN`` or ``USER:TOKEN`` (HTTP basic); kept out of repr so that no log or traceback shows it.
    token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    subject: str
    time: int  # the committer's, seconds since the epoch

    @property
    def short(self) -> str:
        return self.sha[:12]


def problems(remote: Remote) -> list[str]:
    """Everything wrong with ``remote`` as given (empty: usable)."""
    found = _url_problems(remote)
    branch = remote.branch
    if not branch or branch.startswith("-") or not _ref_ok(f"refs/heads/{branch}"):
        found.append(f"--branch {branch!r} is not a branch name")
    path = PurePosixPath(remote.path)
    if remote.path.startswith("/") or ".." in path.parts or not remote.path:
        found.append(f"--path {remote.path!r} must be a folder inside the repository (relative, no '..')")
    if remote.ssh_key is not None and not remote.ssh_key.is_file():
        found.append("--ssh-key: no such file")
    if remote.known_hosts is not None and not remote.known_hosts.is_file():
        found.append(f"--ssh-known-hosts {remote.known_hosts}: no such file")
    return found


def _url_problems(remote: Remote) -> list[str]:
    url = remote.url
    if not url or url.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return [f"--git {url!r} is not a repository URL"]
    if "::" in url.split("/", 1)[0]:
        return [f"--git {url!r}: only {', '.join(_SCHEMES)} URLs, scp-like host:path and paths are accepted"]
    parts = urllib.parse.urlsplit(url)
    found: list[str] = []
    if parts.scheme and "://" in url:
        if parts.scheme not in _SCHEMES:
            found.append(f"--git {url!r}: only {', '.join(_SCHEMES)} URLs, scp-like host:path and paths are accepted")
        if parts.password is not None:
            found.append("--git: the URL holds a password; put the token in a file named by --token-file instead "
                         "(a URL is on command lines and in logs)")  # fmt: skip
    elif not (url.startswith("/") or _SCP_LIKE.match(url)):
        found.append(f"--git {url!r}: a relative path is ambiguous; give an absolute path or a URL")
    if remote.token is not None:
        secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or ""))
        if "://" not in url or not secure:
            found.append("--token-file is only sent over https (or plain http to a loopback address)")
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ref_ok(ref: str) -> bool:
    try:
        done = subprocess.run(["git", "check-ref-format", ref], env=_base_environment(Path("/")),
                              capture_output=True, timeout=LOCAL_TIMEOUT, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def display_url(url: str) -> str:
    """``url`` as status and logs show it: without a password (refused anyway) or a query."""
    parts = urllib.parse.urlsplit(url)
    if "://" not in url or (parts.password is None and not parts.query):
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def repository_name(url: str) -> str:
    """The folder name ``git clone`` would choose (``app`` for ``…/app.git``): the checkout is
    written under it, so that a compose file's project defaults to what it would be in a clone."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1].removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip(".-")
    return name or "repository"


def _base_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": PROTOCOLS,
    }


def _config_environment(settings: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Configuration through the environment (``GIT_CONFIG_COUNT``): off every command line."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def authorization(url: str, token: str) -> tuple[str, str]:
    """The ``(config key, value)`` that sends ``token`` to ``url``'s host only: HTTP basic with the
    token as the password (``USER:TOKEN`` names the user; GitHub and GitLab accept any user name for
    a token, GitHub apps want ``x-access-token``, the default)."""
    user, _, secret = token.partition(":") if ":" in token else ("x-access-token", "", token)
    parts = urllib.parse.urlsplit(url)
    scope = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    credentials = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return f"http.{scope}.extraHeader", f"Authorization: Basic {credentials}"


class Repository:
    """The private mirror of one branch in ``directory`` (root-only), and what is done with it."""

    def __init__(self, directory: Path, remote: Remote, *, fetch_timeout: float = FETCH_TIMEOUT) -> None:
        self.directory = directory
        self.remote = remote
        self.fetch_timeout = fetch_timeout
        self.mirror = directory / "mirror.git"
        files.make_private_dir(directory)
        files.make_private_dir(directory / "home")
        self._environment = self._build_environment()

    def _build_environment(self) -> dict[str, str]:
        settings = [
            ("core.hooksPath", "/dev/null"),
            ("core.symlinks", "false"),
            ("core.fsmonitor", "false"),
            ("gc.autoDetach", "false"),  # a gc left behind would outlive the deadline
            ("maintenance.auto", "false"),
            ("fetch.recurseSubmodules", "false"),
            ("http.lowSpeedLimit", "1000"),  # a stalled transfer fails after a minute, not at the deadline
            ("http.lowSpeedTime", "60"),
            ("http.followRedirects", "false"),  # the token's header must not follow a redirect elsewhere
            ("gpg.minTrustLevel", "fully"),  # a valid signature by an unknown key is no signature here
        ]
        if self.remote.token is not None:
            settings.append(authorization(self.remote.url, self.remote.token))
        env = _base_environment(self.directory / "home")
        env["GIT_SSH_COMMAND"] = shlex.join(self._ssh_command(env))
        env.update(_config_environment(settings))
        return env

    def _ssh_command(self, env: dict[str, str]) -> list[str]:
        """ssh as git runs it; the files it reads go into ``env`` (ssh expands ``${VAR}`` in these
        options itself, so that neither path is on a command line, and a path with a space is one)."""
        # The host key must be known already: a key accepted on first use would hand the deploy key's
        # signature and the manifests' trust to whoever answered first. Only read, never updated.
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15",
               "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no"]  # fmt: skip
        if self.remote.known_hosts is not None:
            env["RECONCILER_SSH_KNOWN_HOSTS"] = str(self.remote.known_hosts)
            ssh += ["-o", "UserKnownHostsFile=${RECONCILER_SSH_KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.remote.ssh_key is not None:
            env["RECONCILER_SSH_KEY"] = str(self.remote.ssh_key)
            ssh += ["-o", "IdentitiesOnly=yes", "-o", "IdentityFile=${RECONCILER_SSH_KEY}"]
        return ssh

    def environment(self) -> Mapping[str, str]:
        """What every git of this repository runs with (tests check what is, and is not, in it)."""
        return dict(self._environment)

    # -- running git ----------------------------------------------------------------------------

    def git(
        self,
        *args: str,
        timeout: float = LOCAL_TIMEOUT,
        extra: Mapping[str, str] | None = None,
        check: bool = True,
        work_tree: Path | None = None,
    ) -> tuple[int, str, str]:
        """``git --git-dir=MIRROR [--work-tree=…] ARGS``: (exit code, stdout, stderr), each cut to
        :data:`OUTPUT_LIMIT`; a failure raises :class:`GitError` unless ``check`` is false."""
        argv = ["git", f"--git-dir={self.mirror}"]
        if work_tree is not None:
            argv.append(f"--work-tree={work_tree}")
        env = {**self._environment, **(extra or {})}
        code, out, err = run([*argv, *args], env, timeout=timeout, label=f"git {args[0]}")
        if check and code != 0:
            raise GitError(f"git {args[0]} failed: {self._clean(err) or f'exit {code}'}")
        return code, out, err

    def _clean(self, text: str) -> str:
        """git's last error lines, with anything that could be the token masked."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        message = "; ".join(lines[-3:])[:1000]
        if self.remote.token:
            for secret in {self.remote.token, *self.remote.token.split(":")}:
                if len(secret) >= 4:
                    message = message.replace(secret, "***")
        if self.remote.ssh_key is not None:  # ssh names the key file when it cannot load it
            message = message.replace(str(self.remote.ssh_key), "the --ssh-key file")
        return message

    def _fetch_error(self, err: str, code: int) -> GitError:
        """Why a fetch failed; ssh's refusals said in words to act on (git's own last lines
        would only say it could not read from the remote)."""
        if "Host key verification failed" not in err and "Permission denied (publickey" not in err:
            # What ssh (or curl) said is the news; git's closing lines say the same for every cause.
            said = [line for line in err.splitlines() if line.strip() and line.strip() not in _GIT_BOILERPLATE]
            return GitError(f"git fetch failed: {self._clean(chr(10).join(said) or err) or f'exit {code}'}")
        parts = urllib.parse.urlsplit(self.remote.url)
        host = parts.hostname or self.remote.url.split("@")[-1].split(":")[0]
        host += f":{parts.port}" if parts.port else ""
        if "Permission denied (publickey" in err:
            given = "the key given by --ssh-key" if self.remote.ssh_key else "every key (no --ssh-key given)"
            return GitError(f"git fetch failed: the ssh server refused {given} ({host}: Permission denied "
                            "(publickey)); add its public key to the repository's deploy keys")  # fmt: skip
        known = self.remote.known_hosts or "~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts"
        if "HOST IDENTIFICATION HAS CHANGED" in err:
            return GitError(f"git fetch failed: the ssh host key of {host} has changed (checked against {known}): "
                            "someone may be in the middle; if the server's key was replaced, check the new key's "
                            "fingerprint and replace the host's line there")  # fmt: skip
        return GitError(f"git fetch failed: the ssh host key of {host} is not known (checked against {known}); "
                        "check its fingerprint, then add it there (ssh-keyscan) or name a file with "
                        "--ssh-known-hosts")  # fmt: skip

    # -- the mirror -----------------------------------------------------------------------------

    def fetch(self) -> str:
        """The branch's tip now (its commit id), fetched into the mirror."""
        if not (self.mirror / "HEAD").is_file():
            files.make_private_dir(self.mirror)
            self.git("init", "--quiet", "--bare")
        # Only the tip is needed (its tree and its signature): a shallow fetch of one commit.
        code, _, err = self.git("fetch", "--quiet", "--no-tags", "--depth=1", "--no-write-fetch-head",
                                "--end-of-options", self.remote.url, f"+refs/heads/{self.remote.branch}:{TIP}",
                                timeout=self.fetch_timeout, check=False)  # fmt: skip
        if code != 0:
            raise self._fetch_error(err, code)
        return self.tip()

    def tip(self) -> str:
        _, out, _ = self.git("rev-parse", "--verify", "--end-of-options", f"{TIP}^{{commit}}")
        return out.strip()

    def tidy(self) -> None:
        """Let git pack and prune what fetches left (past its own thresholds only)."""
        self.git("gc", "--auto", "--quiet", timeout=self.fetch_timeout, check=False)

    def describe(self, sha: str) -> Commit:
        _require_sha(sha)
        _, out, _ = self.git("log", "-1", "--no-show-signature", "--format=%H%x00%ct%x00%s", sha)
        full, stamp, subject = [*out.rstrip("\n").split("\0"), "", ""][:3]
        return Commit(full or sha, subject[:SUBJECT_LIMIT], int(stamp) if stamp.isdigit() else 0)

    def checkout(self, sha: str, target: Path) -> Path:
        """Write the commit's :attr:`Remote.path` under ``target`` (made here, root-only); the
        folder of manifests. :class:`GitError` when the commit has no such folder."""
        _require_sha(sha)
        path = str(PurePosixPath(self.remote.path))
        if path != ".":
            code, out, _ = self.git("cat-file", "-t", f"{sha}:{path}", check=False)
            if code != 0 or out.strip() != "tree":
                raise GitError(f"commit {sha[:12]} has no folder {path}")
        files.make_private_dir(target)
        folder = target / path
        _, listed, _ = self.git("ls-tree", "--name-only", sha, "--", path)
        if not listed.strip():  # an empty tree: git would find nothing to match the path
            files.make_private_dir(folder)
            return folder
        index = self.directory / "checkout.index"
        with contextlib.suppress(FileNotFoundError):
            index.unlink()
        try:
            self.git("checkout", "--quiet", "--force", sha, "--", path, work_tree=target,
                     extra={"GIT_INDEX_FILE": str(index)})  # fmt: skip
        finally:
            with contextlib.suppress(FileNotFoundError):
                index.unlink()
        files.make_private_dir(folder)
        return folder

    # -- signatures -----------------------------------------------------------------------------

    def is_signed(self, sha: str) -> bool:
        _require_sha(sha)
        _, out, _ = self.git("cat-file", "commit", sha)
        header = out.split("\n\n", 1)[0]
        return any(line.startswith(("gpgsig ", "gpgsig-sha256 ")) for line in header.splitlines())

    def unverified(self, sha: str, signers: Signers) -> str | None:
        """Why the commit does not count as signed by one of ``signers`` (None: it does)."""
        if not self.is_signed(sha):
            return "the commit is not signed"
        if signers.kind == "ssh":
            extra = _config_environment([*self._settings(), ("gpg.ssh.allowedSignersFile", str(signers.file))])
        else:
            extra = {"GNUPGHOME": str(self._gnupg_home(signers.file))}
        code, out, err = self.git("verify-commit", "--raw", sha, extra=extra, check=False)
        if code == 0:
            return None
        said = f"{out}\n{err}"
        if "NO_PUBKEY" in said or "No principal matched" in said:
            return f"signed by a key that is not in {signers.file}"
        if "BADSIG" in said or "Signature verification failed" in said or "incorrect signature" in said:
            return "the signature does not match the commit (bad signature)"
        if "EXPKEYSIG" in said or "REVKEYSIG" in said:
            return "signed by an expired or revoked key"
        return f"the signature does not verify: {self._clean(err) or f'exit {code}'}"

    def _settings(self) -> list[tuple[str, str]]:
        count = int(self._environment["GIT_CONFIG_COUNT"])
        return [(self._environment[f"GIT_CONFIG_KEY_{i}"], self._environment[f"GIT_CONFIG_VALUE_{i}"])
                for i in range(count)]  # fmt: skip

    def _gnupg_home(self, keyring: Path) -> Path:
        """A private GnuPG home holding exactly the keyring's keys, each trusted (read afresh each
        time, so that a key taken out of the keyring file stops counting at once)."""
        home = self.directory / "gnupg"
        shutil.rmtree(home, ignore_errors=True)
        files.make_private_dir(home)
        env = {**_base_environment(self.directory / "home"), "GNUPGHOME": str(home)}
        gpg = ["gpg", "--batch", "--no-autostart", "--no-tty", "--quiet"]
        code, _, err = run([*gpg, "--import", str(keyring)], env, timeout=LOCAL_TIMEOUT)
        if code != 0:
            raise GitError(f"cannot read the keyring {keyring}: {self._clean(err) or f'exit {code}'}")
        _, out, _ = run([*gpg, "--with-colons", "--fingerprint", "--list-keys"], env, timeout=LOCAL_TIMEOUT)
        primary = _primary_fingerprints(out)
        trust = "".join(f"{fingerprint}:6:\n" for fingerprint in primary).encode()
        run([*gpg, "--import-ownertrust"], env, timeout=LOCAL_TIMEOUT, stdin=trust)
        return home


def _primary_fingerprints(listing: str) -> list[str]:
    """The fingerprint of each primary key in ``gpg --with-colons`` output (the ``fpr`` after a ``pub``)."""
    found, after_pub = [], False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            after_pub = True
        elif fields[0] == "fpr" and after_pub and len(fields) > 9:
            found.append(fields[9])
            after_pub = False
    return found


def _require_sha(sha: str) -> None:
    if not _HEX.match(sha):
        raise GitError(f"{sha!r} is not a commit id")


def run(
    argv: list[str], env: Mapping[str, str], *, timeout: float, stdin: bytes | None = None, label: str = ""
) -> tuple[int, str, str]:
    """Run a program in a session of its own: (exit code, stdout, stderr), each cut to
    :data:`OUTPUT_LIMIT` (read from files, so that no output can fill the memory or block it);
    past ``timeout`` its whole process group (ssh, git-remote-https) is killed."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        given = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
        process = subprocess.Popen(argv, stdin=given, stdout=out, stderr=err, env=dict(env),
                                   start_new_session=True, umask=0o077)  # fmt: skip
        try:
            if stdin is not None and process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.write(stdin)
                process.stdin.close()
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise GitError(f"{label or Path(argv[0]).name} took longer than {timeout:g}s and was stopped") from None
        return code, _tail(out), _tail(err)


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - OUTPUT_LIMIT))
    data: bytes = stream.read()
    return data.decode("utf-8", errors="replace")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> None:
    """Swap two directories in one step (``renameat2(RENAME_EXCHANGE)``): a reader of either path
    sees the old tree or the new one, never a mix and never nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    done = libc.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if done != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(first))
