"""Day-2 verbs through the real command line on the native engine: ``stop``/``start``/``restart``
(one name, a whole stack), ``exec -i`` with stdin, ``apply --force-recreate``, and an apply that
says why a container whose restart policy gave up is down."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.backends.native import engine as native_engine
from tests.support.polling import eventually


def stack_text(prefix: str, image: str) -> str:
    def container(name: str, command: str, restart: str) -> str:
        return (
            f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}{name}, stack: {prefix}day2}}\n"
            f"spec:\n  image: {image}\n  command: [sh, -c, {command!r}]\n  restart: {restart}\n"
            "  stopTimeout: 1s\n"
        )

    return "---\n".join([
        container("a", "exec sleep 3600", "{policy: always}"),
        container("b", "exec sleep 3600", "{policy: always}"),
        container("job", "exit 1", "{policy: on-failure, maxRetries: 1}"),
    ])  # fmt: skip


@pytest.mark.integration
def test_day_two_verbs_on_the_native_engine(
    root: Path,
    engine: native_engine.NativeEngine,
    prefix: str,
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(stack_text(prefix, image))
    base = ["--engine", "native", "--root", str(root)]
    a, b, job = f"{prefix}a", f"{prefix}b", f"{prefix}job"

    def state(name: str) -> str:
        return engine.observe().containers[name].state

    def exited(name: str) -> bool:
        return state(name) == "exited"

    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    eventually(lambda: exited(job), what=f"{job} exits")

    capfdbinary.readouterr()
    assert cli.main([*base, "stop", "--stack", f"{prefix}day2"]) == 0
    assert (state(a), state(b)) == ("exited", "exited")
    assert capfdbinary.readouterr().err == b""
    # Recorded as stopped on purpose, the exited job too (a daemon leaves them stopped: stopping a
    # crash-looping container must end its restarts).
    assert sorted(path.name for path in (root / "stopped").iterdir()) == sorted([a, b, job])
    assert cli.main([*base, "start", a]) == 0
    assert (state(a), state(b)) == ("running", "exited")
    assert sorted(path.name for path in (root / "stopped").iterdir()) == sorted([b, job])
    first = engine.observe().containers[a]
    assert cli.main([*base, "restart", a, b]) == 0
    after = engine.observe().containers
    assert (after[a].state, after[b].state) == ("running", "running")
    assert after[a].container_id == first.container_id and after[a].restart_count == first.restart_count + 1
    capfdbinary.readouterr()
    assert cli.main([*base, "stop", "theirs"]) == 1
    assert b"no container managed by reconciler named theirs" in capfdbinary.readouterr().err

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"echo hi; cat /etc/hostname >/dev/null\n")))
    assert cli.main([*base, "exec", "-i", a, "--", "sh"]) == 0
    assert capfdbinary.readouterr().out == b"hi\n"

    assert cli.main([*base, "apply", "-f", str(manifest), "--force-recreate", b]) == 0
    assert engine.observe().containers[b].container_id != after[b].container_id
    assert b"recreate, forced (--force-recreate)" in capfdbinary.readouterr().out

    # The job exited 1 once; this apply restarts it (its one retry), the next one gives up.
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    eventually(lambda: exited(job) and engine.observe().containers[job].restart_count == 1, what="the retry")
    capfdbinary.readouterr()
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    out = capfdbinary.readouterr().out.decode()
    assert "No changes" in out
    assert f"its restart policy gave up after 1 restarts (maxRetries 1); `reconcile restart {job}`" in out
