"""``reconcile watch --git URL``: the git source the options ask for, and the webhook it answers.

Where it sits: in ``reconciler.cli``, under the daemon process (:mod:`reconciler.cli.daemon`
imports it when ``watch`` runs). It checks the options together, reads the files that hold
secrets (a token, the webhook's secret) and builds the controller's
:class:`~reconciler.controller.git_source.GitSource`. A secret is never echoed in an error, and
never reaches a command line: the token goes to git through its environment
(:mod:`reconciler.gitrepo`). It must not start anything.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
from pathlib import Path

from reconciler import errors, gitrepo, webhooks
from reconciler.controller import git_source
from reconciler.manifests import units

log = logging.getLogger("reconciler.daemon")

# Options that mean something only with --git (their argparse destinations and spellings).
GIT_ONLY = {"branch": "--branch", "path": "--path", "interval": "--interval", "ssh_key": "--ssh-key",
            "ssh_known_hosts": "--ssh-known-hosts", "token_file": "--token-file",
            "webhook_secret_file": "--webhook-secret-file",
            "require_signed": "--require-signed", "allowed_signers": "--allowed-signers",
            "gpg_keyring": "--gpg-keyring"}  # fmt: skip
SECRET_LIMIT = 64 * 1024


def folder_and_source(args: argparse.Namespace, state_dir: Path) -> tuple[Path, git_source.GitSource | None]:
    """The folder the controller watches: DIR, or the git source's (built here) with ``--git``."""
    given = args.manifests or args.dir
    if args.git is None:
        used = [spelling for dest, spelling in GIT_ONLY.items() if getattr(args, dest, None) not in (None, False)]
        if used:
            raise errors.ReconcilerError(f"{', '.join(used)}: only with --git URL")
        if not given:
            raise errors.ReconcilerError("watch needs a folder (DIR) or a repository (--git URL)")
        folder = Path(given).resolve()
        if not folder.is_dir():
            raise errors.ReconcilerError(f"{folder} is not a folder")
        return folder, None
    if given:
        raise errors.ReconcilerError("watch takes a folder or --git URL, not both")
    source = git_source.GitSource(settings(args), state_dir / "git")
    hook(args, source)  # the webhook's secret is checked now, before anything starts
    return source.folder, source


def settings(args: argparse.Namespace) -> git_source.Settings:
    """The git source's settings; every problem of the options at once."""
    token = None
    if args.token_file:
        token = read_secret(args.token_file, "--token-file").decode("utf-8", "replace").strip()
        if not token or any(ord(ch) < 32 or ord(ch) == 127 for ch in token):
            raise errors.ReconcilerError(f"--token-file: {args.token_file} must hold one line: TOKEN or USER:TOKEN")
    ssh_key = Path(args.ssh_key).resolve() if args.ssh_key else None
    if ssh_key is not None:
        private(ssh_key, "--ssh-key", shown="the file")  # the deploy key's path is shown nowhere
    known_hosts = Path(args.ssh_known_hosts).resolve() if args.ssh_known_hosts else None
    remote = gitrepo.Remote(args.git, branch=args.branch or "main", path=args.path or ".", ssh_key=ssh_key,
                            known_hosts=known_hosts, token=token)  # fmt: skip
    found = gitrepo.problems(remote)
    signers = signers_of(args, found)
    try:
        interval = units.parse_duration(args.interval) if args.interval else git_source.DEFAULT_INTERVAL
        if interval < 1:
            raise ValueError("at least 1s: the webhook is how to be faster")
    except ValueError as exc:
        found.append(f"--interval: {exc}")
        interval = git_source.DEFAULT_INTERVAL
    if found:
        raise errors.ReconcilerError("; ".join(found))
    return git_source.Settings(remote, interval=interval, signers=signers)


def signers_of(args: argparse.Namespace, found: list[str]) -> gitrepo.Signers | None:
    """``--require-signed`` with its one source of keys (problems appended to ``found``)."""
    given = [(kind, value) for kind, value in (("ssh", args.allowed_signers), ("gpg", args.gpg_keyring)) if value]
    if not args.require_signed:
        if given:
            found.append("--allowed-signers and --gpg-keyring: only with --require-signed")
        return None
    if len(given) != 1:
        found.append("--require-signed needs one of --allowed-signers FILE (ssh) or --gpg-keyring FILE (gpg)")
        return None
    kind, value = given[0]
    path = Path(value).resolve()
    if not path.is_file():
        found.append(f"{'--allowed-signers' if kind == 'ssh' else '--gpg-keyring'} {value}: no such file")
    return gitrepo.Signers("ssh" if kind == "ssh" else "gpg", path)


def hook(args: argparse.Namespace, trigger: git_source.GitSource | None) -> webhooks.GitHook | None:
    """``POST /hooks/git``'s secret and trigger (None without ``--webhook-secret-file``)."""
    if trigger is None or not args.webhook_secret_file:
        return None
    secret = read_secret(args.webhook_secret_file, "--webhook-secret-file").strip()
    if len(secret) < 16:
        raise errors.ReconcilerError(f"--webhook-secret-file: {args.webhook_secret_file} holds fewer than 16 bytes")
    return webhooks.GitHook(secret, trigger.trigger)


def read_secret(path: str, option: str) -> bytes:
    """A file holding a secret: at most 64 KiB, never echoed in an error; a warning when others may read it."""
    private(Path(path), option)
    try:
        with open(path, "rb") as handle:
            data = handle.read(SECRET_LIMIT + 1)
    except OSError as exc:
        raise errors.ReconcilerError(f"{option}: {path}: {exc.strerror}") from None
    if len(data) > SECRET_LIMIT:
        raise errors.ReconcilerError(f"{option}: {path} is larger than {SECRET_LIMIT >> 10} KiB")
    return data


def private(path: Path, option: str, *, shown: str | None = None) -> None:
    """Warn when a secret's file may be read by others than its owner (ssh refuses such a key);
    ``shown`` stands for the path in what is said."""
    name = shown or str(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise errors.ReconcilerError(f"{option}: {name}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s may be read by other users (mode %o); chmod 600 it", option, name, stat.S_IMODE(mode))
