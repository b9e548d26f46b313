"""The real CLI on the native engine, without a daemon: ``events`` tells what happened, in order,
and returns with ``--no-follow``; ``delete`` of the last stack leaves no hidden ``default`` network.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.backends.native import engine as native_engine
from tests.support.polling import eventually

ROOT = Path(__file__).parents[3]


def manifest(path: Path, prefix: str, image: str) -> Path:
    """Two containers of one stack on the implicit default network: one runs, one exits with 3."""
    path.write_text(f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {prefix}sleeper, stack: {prefix}stack}}
spec: {{image: "{image}", command: [sleep, "300"]}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {prefix}job, stack: {prefix}stack}}
spec: {{image: "{image}", command: [sh, -c, "exit 3"]}}
""")
    return path


def applied(root: Path, prefix: str, image: str, tmp_path: Path, engine: native_engine.NativeEngine) -> list[str]:
    base = ["--engine", "native", "--root", str(root), "--socket", "none"]
    assert cli.main([*base, "apply", "-f", str(manifest(tmp_path / "stack.yaml", prefix, image))]) == 0

    def job_exited() -> bool:
        return engine.observe().containers[f"{prefix}job"].state == "exited"

    eventually(job_exited, what=f"{prefix}job to exit")
    return base


@pytest.mark.integration
def test_events_without_daemon_print_the_recorded_history_in_order_and_return(
    root: Path, engine: native_engine.NativeEngine, image: str, prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    base = applied(root, prefix, image, tmp_path, engine)
    capsys.readouterr()
    assert cli.main([*base, "events", "--no-follow", "-o", "json"]) == 0
    seen = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["time"] for e in seen] == sorted(e["time"] for e in seen)
    assert {e["stack"] for e in seen} == {f"{prefix}stack"}
    by_name = {name: [e["kind"] for e in seen if e["name"] == name] for name in (f"{prefix}sleeper", f"{prefix}job")}
    assert by_name == {f"{prefix}sleeper": ["create", "start"], f"{prefix}job": ["create", "start", "die"]}
    assert next(e for e in seen if e["kind"] == "die")["message"] == "exit code 3"


@pytest.mark.integration
def test_events_follow_after_the_history_without_repeating_it(
    root: Path, engine: native_engine.NativeEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    base = applied(root, prefix, image, tmp_path, engine)
    sleeper = f"{prefix}sleeper"
    lines: list[dict[str, object]] = []

    def kinds() -> list[object]:
        return [e["kind"] for e in list(lines) if e["name"] == sleeper]

    def restarted_seen() -> bool:
        # Restarted until the live stream reports an exit: then it has surely subscribed.
        if "die" in kinds():
            return True
        engine.stop_container(sleeper, timeout=0)
        engine.start_container(sleeper)
        return False

    with subprocess.Popen([sys.executable, "-m", "reconciler.cli", *base, "events", "-o", "json"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as follower:  # fmt: skip
        reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in follower.stdout or ()))
        reader.start()
        try:
            eventually(lambda: len(lines) >= 5, what="the history printed")
            eventually(restarted_seen, interval=0.2, what=f"a live die of {sleeper}")
            eventually(lambda: kinds()[-1] == "start", what=f"the last start of {sleeper}")
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(timeout=30)
            reader.join(timeout=30)
    told = kinds()
    # The history's create and start, then runs that each end before the next begins: the
    # stream's report of the run the history already showed is not printed again.
    assert told[:2] == ["create", "start"] and len(told) % 2 == 0
    assert told[2:] == ["die", "start"] * (len(told) // 2 - 1), told
    assert {e["stack"] for e in lines} == {f"{prefix}stack"}


@pytest.mark.integration
def test_deleting_the_last_stack_removes_the_default_network(
    root: Path, engine: native_engine.NativeEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    base = applied(root, prefix, image, tmp_path, engine)
    default = engine.networks.get(native_engine.DEFAULT_NETWORK)
    assert default is not None
    dns_pid = int((root / "networks" / native_engine.DEFAULT_NETWORK / "dns.pid").read_text())
    assert Path(f"/sys/class/net/{default.bridge}").exists() and default.bridge in rules()
    assert cli.main([*base, "delete", "--stack", f"{prefix}stack"]) == 0
    assert engine.networks.get(native_engine.DEFAULT_NETWORK) is None
    assert not Path(f"/sys/class/net/{default.bridge}").exists()
    assert default.bridge not in rules() and default.subnet not in rules()
    # Stopped and reaped (the CLI ran in this process, whose reaper thread collects it).
    eventually(lambda: not dns_running(dns_pid), what=f"the DNS server {dns_pid} gone")


def rules() -> str:
    return "".join(
        subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        for table in ("filter", "nat")
    )


def dns_running(pid: int) -> bool:
    try:
        return b"reconciler.backends.native.dns" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
