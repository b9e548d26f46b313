"""The acceptance's rollback scenario through the git source (issue 14, point 4 with points 1-2), on
the native engine: ``reconcile watch --git`` converges a committed stack that serves on a fixed
host port; a commit whose health check fails, fetched through a signed webhook, is rolled back
(a ``rollback`` event says why) while a probe loop from the host on 127.0.0.1:PORT sees no
failure; the controller does not try that commit's spec again; a fixed commit rolls forward.

Real parts only: git, git daemon, runc, overlayfs, a bridge network with its DNAT rules, the
project's supervisor; busybox loaded into a private root. The fixtures (a loaded root, a prefix
whose containers are removed through the engine) and the ``reconcile watch`` child process are
those of :mod:`tests.integration.controller.test_git`; every process started here is stopped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.integration.controller.test_git import Watch, prefix, root, signed  # noqa: F401 (fixtures)
from tests.integration.native.test_rollout import BROKEN, SERVES, ProbeLoop, free_port, web
from tests.support import git as git_support
from tests.support.cli import fetch
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

SECRET = b"the-webhook-secret-of-the-rollout-test"


def container_id(state: Path, name: str) -> str | None:
    engine = native_engine.NativeEngine(state)
    try:
        found = engine.observe().containers.get(name)
        return found.container_id if found is not None else None
    finally:
        engine.close()


def test_a_commit_that_fails_its_health_check_rolls_back_while_the_old_one_serves(
    root: Path,  # noqa: F811 (the fixture)
    prefix: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    name, stack, port = f"{prefix}web", f"{prefix}shop", free_port()
    upstream = git_support.Upstream(tmp_path / "upstream")
    daemon_of_git = git_support.GitDaemon(upstream.bare.parent, tmp_path / "git-daemon.log")
    secret = tmp_path / "hook-secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    upstream.write("deploy/web.yaml", web(name, stack, port, "v1", SERVES) + "  restart: always\n")
    upstream.commit("v1")
    watch = Watch(root, tmp_path, "--git", f"{daemon_of_git.url_base}/app.git", "--path", "deploy",
                  "--interval", "1h", "--webhook-secret-file", str(secret))  # fmt: skip
    body = b'{"after": "x"}'
    try:
        url = f"http://127.0.0.1:{port}/"
        eventually(lambda: fetch(url) == b"v1\n", timeout=60, what=f"v1 serving (log: {watch.log})")
        first = container_id(root, name)

        upstream.write("deploy/web.yaml", web(name, stack, port, "v2", BROKEN) + "  restart: always\n")
        bad = upstream.commit("v2: its health check fails")
        with ProbeLoop(port) as loop:
            assert watch.hook(signed(body, SECRET), body) == 202
            [rollback] = eventually(
                lambda: [e for e in watch.client.events(follow=False) if e["kind"] == "rollback"],
                timeout=60, what=f"the rollback event (log: {watch.log})",
            )  # fmt: skip
        assert watch.git()["inForce"]["commit"] == bad
        assert rollback["name"] == name and f"container {name}.next turned unhealthy" in rollback["message"]
        assert len(loop.answers) > 10 and loop.failures() == [] and set(loop.answers) == {"v1"}
        assert container_id(root, name) == first and container_id(root, f"{name}.next") is None
        # Its retries find the spec held back: no second replacement is created.
        eventually(lambda: not watch.client.status()["stacks"].get(stack, {}).get("error"), timeout=60,
                   what="the stack's retry to succeed (the spec held back)")  # fmt: skip
        assert [e["kind"] for e in watch.client.events(follow=False)].count("rollback") == 1
        assert container_id(root, name) == first
        # Status names the spec held back, on that container's row.
        [held] = [o["heldBack"] for o in watch.client.status()["objects"] if o["name"] == name]
        assert held["text"].startswith("held back: v1:sha256:")
        assert f"UTC, container {name}.next turned unhealthy" in held["text"], held
        # The daemon's plan of that commit says why nothing is done.
        (tmp_path / "v2.yaml").write_text(web(name, stack, port, "v2", BROKEN) + "  restart: always\n")
        planned = subprocess.run([sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root),
                                  "--socket", watch.socket, "plan", "-f", str(tmp_path / "v2.yaml")],
                                 capture_output=True, text=True, timeout=60, check=False, cwd="/")  # fmt: skip
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert f"Note: container {name}: held back: v1:sha256:" in planned.stdout

        upstream.write("deploy/web.yaml", web(name, stack, port, "v3", SERVES) + "  restart: always\n")
        fixed = upstream.commit("v3: the fix")
        with ProbeLoop(port) as loop:
            assert watch.hook(signed(body, SECRET), body) == 202
            eventually(lambda: container_id(root, name) not in (first, None), timeout=60, what="the switch to v3")
            eventually(lambda: loop.answers and loop.answers[-1] == "v3", timeout=60, what=f"v3 serving ({watch.log})")
        assert watch.git()["inForce"]["commit"] == fixed
        # The roll-forward is hitless too: the old one served until the switch, then the new one.
        assert loop.failures() == [] and set(loop.answers) == {"v1", "v3"}
    finally:
        watch.stop()
        daemon_of_git.stop()
