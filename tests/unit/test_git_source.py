"""The git source (issue 14, points 1 and 3): a controller on the memory engine converges on a
branch of a real repository (a bare path), keeps the last good commit in force when a commit does
not validate or is not signed as required, and names each reason by commit and file:line:col."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, controller, gitrepo
from reconciler.backends import memory
from reconciler.cli import status
from reconciler.controller import git_source
from tests.support import git as git_support
from tests.unit.controller_support import IMAGE, FakeClock, container_yaml


@pytest.fixture
def upstream(tmp_path: Path) -> git_support.Upstream:
    git_support.require_git()
    return git_support.Upstream(tmp_path / "upstream")


class GitHarness:
    """A controller on the memory engine and a fake clock whose folder is a git source."""

    def __init__(self, state: Path, url: str, *, path: str = "deploy", signers: gitrepo.Signers | None = None,
                 target: memory.MemoryEngine | None = None) -> None:  # fmt: skip
        self.clock = FakeClock()
        self.engine = target or memory.MemoryEngine(images={IMAGE: "sha256:" + "ab" * 32}, clock=self.clock.wall)
        settings = git_source.Settings(gitrepo.Remote(url, path=path), signers=signers)
        self.source = git_source.GitSource(settings, state / "git", clock=self.clock)
        self.controller = controller.Controller(self.engine, Path("/nonexistent"), clock=self.clock, state_dir=state,
                                                git=self.source)  # fmt: skip

    def sync(self) -> bool:
        """One fetch, then every pass it causes (as the git source's thread and the workers would)."""
        switched = self.source.sync()
        self.controller.run_ready()
        return switched

    def status(self) -> dict[str, object]:
        # What the API sends: it must be JSON.
        return json.loads(json.dumps(self.controller.status()))  # type: ignore[no-any-return]

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.controller.events_since() if e["kind"] == kind]


@pytest.fixture
def harness(tmp_path: Path, upstream: git_support.Upstream) -> Iterator[GitHarness]:
    yield GitHarness(tmp_path / "state", str(upstream.bare))


def test_a_commit_runs_a_bad_one_leaves_the_last_good_in_force_and_a_fix_rolls_forward(
    harness: GitHarness, upstream: git_support.Upstream
) -> None:
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    first = upstream.commit("web")
    assert harness.sync()
    assert harness.engine.containers["web"].state == "running"
    shown = harness.status()
    git = shown["git"]
    assert isinstance(git, dict)
    assert git["inForce"]["commit"] == first and git["lastTried"]["state"] == "applied"
    # Every pass's plan is in the events with the commit in force.
    reconciled = harness.events("reconcile")
    assert reconciled and all(event["commit"] == first for event in reconciled), reconciled
    assert "create" in str(reconciled[0]["message"])

    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop") + "  bogus: 1\n")
    upstream.write("deploy/db.yaml", container_yaml("db", stack="shop"))
    bad = upstream.commit("a typo")
    assert not harness.sync()
    assert "db" not in harness.engine.containers, "nothing of the refused commit is applied"
    assert harness.engine.containers["web"].state == "running"
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["inForce"]["commit"] == first
    assert git["lastTried"]["commit"] == bad and git["lastTried"]["state"] == "refused"
    assert git["lastTried"]["errors"] == [f"commit {bad[:12]}: deploy/shop.yaml:6:3: spec.bogus: unknown field `bogus`"]
    files = [f for f in harness.status()["files"] if f["state"] == "error"]  # type: ignore[attr-defined]
    assert files == [{"path": "deploy/shop.yaml", "state": "error", "usingLastGood": True, "stacks": [], "commit": bad,
                      "errors": [f"commit {bad[:12]}: deploy/shop.yaml:6:3: spec.bogus: unknown field `bogus`"]}]  # fmt: skip
    refused = harness.events("commit-refused")
    assert len(refused) == 1 and "deploy/shop.yaml:6:3" in str(refused[0]["message"])
    assert (harness.source.folder / "shop.yaml").read_text() == container_yaml("web", stack="shop")
    assert not harness.sync() and len(harness.events("commit-refused")) == 1, "a refused tip is not tried again"

    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop", extra="env: {A: '1'}"))
    fixed = upstream.commit("the fix")
    assert harness.sync()
    assert harness.engine.containers["db"].state == "running"
    assert harness.engine.containers["web"].request.env == {"A": "1"}
    assert [f for f in harness.status()["files"] if f["state"] == "error"] == []  # type: ignore[attr-defined]
    assert harness.events("reconcile")[-1]["commit"] == fixed

    upstream.remove("deploy/db.yaml")
    upstream.commit("db goes")
    assert harness.sync()
    assert "db" not in harness.engine.containers, "a file deleted in a commit prunes what it declared"


def test_a_commit_without_the_folder_is_refused_and_prunes_nothing(
    harness: GitHarness, upstream: git_support.Upstream
) -> None:
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    upstream.commit("web")
    harness.sync()
    upstream.remove("deploy/shop.yaml")
    upstream.write("elsewhere/shop.yaml", container_yaml("web", stack="shop"))
    moved = upstream.commit("moved the folder")
    assert not harness.sync()
    assert harness.engine.containers["web"].state == "running"
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["lastTried"]["errors"] == [f"commit {moved[:12]}: commit {moved[:12]} has no folder deploy"]


def test_an_unreachable_remote_is_reported_once_and_changes_nothing(tmp_path: Path) -> None:
    harness = GitHarness(tmp_path / "state", str(tmp_path / "missing.git"))
    assert not harness.sync() and not harness.sync()
    failed = harness.events("fetch-failed")
    assert len(failed) == 1 and "git fetch failed" in str(failed[0]["message"])
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["inForce"] is None and git["lastFetch"]["error"] and git["lastFetch"]["count"] == 2
    assert not harness.controller.converge_once(), "--once fails when nothing could be fetched"


def test_unsigned_and_foreign_commits_are_not_applied_when_signatures_are_required(
    tmp_path: Path, upstream: git_support.Upstream
) -> None:
    key, allowed = git_support.ssh_signer(tmp_path, "deployer")
    stranger, _ = git_support.ssh_signer(tmp_path, "stranger")
    harness = GitHarness(tmp_path / "state", str(upstream.bare), signers=gitrepo.Signers("ssh", allowed))
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    signed = upstream.commit("web", sign=git_support.ssh_signing(key))
    assert harness.sync()
    assert harness.engine.containers["web"].state == "running"

    upstream.write("deploy/db.yaml", container_yaml("db", stack="shop"))
    unsigned = upstream.commit("db, unsigned")
    assert not harness.sync()
    assert "db" not in harness.engine.containers
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["inForce"]["commit"] == signed and git["requireSigned"] == "ssh"
    assert git["lastTried"]["errors"] == [f"commit {unsigned[:12]}: the commit is not signed"]
    rows = [f for f in harness.status()["files"] if f["state"] == "error"]  # type: ignore[attr-defined]
    assert rows[0]["path"] == f"commit {unsigned[:12]}" and rows[0]["usingLastGood"]

    foreign = upstream.commit("db, signed by a stranger", sign=git_support.ssh_signing(stranger))
    assert not harness.sync()
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["lastTried"]["errors"] == [f"commit {foreign[:12]}: signed by a key that is not in {allowed}"]

    upstream.commit("db, signed", sign=git_support.ssh_signing(key))
    assert harness.sync()
    assert harness.engine.containers["db"].state == "running"


def test_gpg_signed_commits_pass_with_the_keyring(tmp_path: Path, upstream: git_support.Upstream) -> None:
    signer = git_support.GpgSigner(tmp_path)
    try:
        harness = GitHarness(tmp_path / "state", str(upstream.bare), signers=gitrepo.Signers("gpg", signer.keyring))
        upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
        upstream.commit("web, unsigned")
        assert not harness.sync()
        assert "web" not in harness.engine.containers
        upstream.commit("web, signed", sign=signer.signing(), env=signer.env)
        assert harness.sync()
        assert harness.engine.containers["web"].state == "running"
    finally:
        signer.stop()


def test_a_restarted_controller_knows_the_commit_in_force_without_fetching(
    tmp_path: Path, upstream: git_support.Upstream
) -> None:
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    first = upstream.commit("web")
    before = GitHarness(tmp_path / "state", str(upstream.bare))
    before.sync()
    upstream.write("deploy/shop.yaml", "kind: [")
    upstream.commit("broken")
    before.sync()

    after = GitHarness(tmp_path / "state", str(upstream.bare), target=before.engine)
    assert after.source.commit_in_force() == first
    assert after.status()["git"]["lastFetch"]["count"] == 0  # type: ignore[index]
    after.controller.enqueue(controller.SCAN_KEY)
    after.controller.run_ready()
    assert before.engine.containers["web"].state == "running", "the restarted controller prunes nothing"
    # The broken tip is tried again after a restart (a keyring may have changed), and refused again.
    assert not after.sync()
    assert after.status()["git"]["inForce"]["commit"] == first  # type: ignore[index]


def test_events_name_the_commit_in_force(harness: GitHarness, upstream: git_support.Upstream) -> None:
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    sha = upstream.commit("web")
    harness.sync()
    applied = harness.events("commit-applied")
    assert applied[0]["commit"] == sha and f"commit {sha[:12]} (web) in force" == applied[0]["message"]


def test_a_commit_with_too_many_manifests_or_errors_is_refused_within_bounds(
    harness: GitHarness, upstream: git_support.Upstream
) -> None:
    for index in range(git_source.MAX_MANIFESTS + 1):
        upstream.write(f"deploy/m{index:04d}.yaml", "")
    crowded = upstream.commit("a crowd")
    assert not harness.sync()
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["lastTried"]["errors"] == [
        f"commit {crowded[:12]}: deploy: {git_source.MAX_MANIFESTS + 1} manifests, more than the "
        f"{git_source.MAX_MANIFESTS} a folder may hold"
    ]
    for index in range(git_source.MAX_MANIFESTS + 1):
        upstream.remove(f"deploy/m{index:04d}.yaml")
    for index in range(30):
        upstream.write(f"deploy/bad{index:02d}.yaml", container_yaml(f"web{index}") + "  bogus: 1\n")
    broken = upstream.commit("thirty broken files")
    assert not harness.sync()
    git = harness.status()["git"]
    assert isinstance(git, dict)
    assert git["lastTried"]["commit"] == broken and len(git["lastTried"]["errors"]) == 30
    message = str(harness.events("commit-refused")[-1]["message"])
    assert message.endswith("; and 20 more (see status)") and message.count("spec.bogus") == 10


def test_the_status_command_names_the_commit_in_force_and_the_last_tried(
    harness: GitHarness, upstream: git_support.Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.write("deploy/shop.yaml", container_yaml("web", stack="shop"))
    good = upstream.commit("web")
    harness.sync()
    upstream.write("deploy/shop.yaml", "kind: [\n")
    bad = upstream.commit("broken")
    harness.sync()
    server = api.Server(harness.controller, socket_path=str(tmp_path / "run" / "api.sock"), poll_interval=0.05)
    server.start()
    try:
        args = argparse.Namespace(engine="memory", root="/nonexistent", socket=server.socket_path, output="text")
        assert status.status_via_daemon(args) == 0
    finally:
        server.stop()
    shown = capsys.readouterr()
    assert f"git {upstream.bare} main: commit {good[:12]} in force; last tried {bad[:12]}: refused" in shown.err
    row = next(line for line in shown.out.splitlines() if line.startswith("File"))
    assert "deploy/shop.yaml" in row and f"commit {bad[:12]}: deploy/shop.yaml:2:1" in row
    assert "last good version in force" in row
