"""Restart policies on the native engine with no controller running: each container's keeper
(conmon) starts the restarter when the container exits (its exit command), which applies the one
restart policy with its backoff; a stop (by the engine or on purpose) is not undone. After a simulated reboot (keepers
and container processes killed, the runtime's state gone) ``reconcile boot`` brings back exactly
the ``always`` and ``unless-stopped`` containers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import runs as native_runs
from tests.support import images
from tests.support.cli import fetch, reconcile
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


def container(name: str, stack: str, restart: str, command: str = "sleep 3600") -> str:
    return (f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\n"
            f"spec: {{image: '{IMAGE}', command: [sh, -c, '{command}'], networkMode: none, stopTimeout: 1s,\n"
            f"        restart: {restart}}}\n")  # fmt: skip


def directory(engine: native_engine.NativeEngine, name: str) -> Path:
    return engine.records.get(name).directory


def decisions(engine: native_engine.NativeEngine, name: str) -> list[str]:
    log = directory(engine, name) / "restarter.log"
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.integration
def test_policies_hold_with_no_controller(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                          tmp_path: Path) -> None:  # fmt: skip
    web, job, stack = f"{prefix}web", f"{prefix}job", f"{prefix}s"
    manifest = tmp_path / "s.yaml"
    manifest.write_text(
        container(web, stack, "{policy: always, backoff: {initial: 100ms}}")
        + container(job, stack, "{policy: on-failure, maxRetries: 1, backoff: {initial: 100ms}}", "exit 3")
    )
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    # The main process killed: back within its backoff (the restarter says after how long).
    first = engine.observe().containers[web]
    init_pid = int((directory(engine, web) / "init.pid").read_text())
    os.kill(init_pid, signal.SIGKILL)
    eventually(lambda: engine.observe().containers[web].restart_count == first.restart_count + 1
               and engine.observe().containers[web].state == "running", what=f"{web} restarted")  # fmt: skip
    assert decisions(engine, web)[-1].startswith("restarted after 0.")

    # on-failure with maxRetries 1: one restart, then it stays down, saying why.
    eventually(lambda: any("on-failure, exit 3, 1 restarts" in d for d in decisions(engine, job)), what="give up")
    assert engine.observe().containers[job].restart_count == 1

    # A stop is not undone: the keeper, seeing the engine's stop marker, starts no restarter
    # (it would start it before it ends, so once it is gone nothing can come).
    keeper = int(json.loads((directory(engine, web) / "supervisor.pid.json").read_text())["pid"])
    before = decisions(engine, web)
    assert reconcile(loaded, "stop", web).returncode == 0
    eventually(lambda: not Path(f"/proc/{keeper}").exists(), what="the keeper gone")
    assert decisions(engine, web) == before
    assert engine.observe().containers[web].state == "exited"


@pytest.mark.integration
def test_boot_brings_back_exactly_always_and_unless_stopped(loaded: Path, engine: native_engine.NativeEngine,
                                                            prefix: str, tmp_path: Path) -> None:  # fmt: skip
    stack = f"{prefix}b"
    names = {policy: f"{prefix}{policy.replace('-', '')}" for policy in ("always", "unless-stopped", "no")}
    held = f"{prefix}held"
    manifest = tmp_path / "b.yaml"
    manifest.write_text("".join(container(name, stack, policy) for policy, name in names.items())
                        + container(held, stack, "unless-stopped"))  # fmt: skip
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert reconcile(loaded, "stop", held).returncode == 0

    # The reboot: keepers first (so that no exit is recorded and nothing restarts), then the
    # containers' processes, then the runtime's state.
    running = [name for name, c in engine.observe().containers.items() if c.state == "running"]
    assert sorted(running) == sorted(names.values())
    inits = []
    for name in running:
        keeper = json.loads((directory(engine, name) / "supervisor.pid.json").read_text())
        os.kill(int(keeper["pid"]), signal.SIGKILL)
        inits.append(int((directory(engine, name) / "init.pid").read_text()))
    for pid in inits:
        os.kill(pid, signal.SIGKILL)
    eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in inits), what="the processes gone")
    shutil.rmtree(loaded / "runtime")
    assert all(c.state != "running" for c in engine.observe().containers.values())

    booted = reconcile(loaded, "boot")
    assert booted.returncode == 0, booted.stdout + booted.stderr
    assert sorted(booted.stdout.split()) == sorted(["started", names["always"], "started", names["unless-stopped"]])
    states = {name: c.state for name, c in engine.observe().containers.items()}
    assert states[names["always"]] == states[names["unless-stopped"]] == "running"
    assert states[names["no"]] != "running" and states[held] != "running"


@pytest.mark.integration
def test_boot_after_a_real_reboot_remakes_networks_and_ports(loaded: Path, engine: native_engine.NativeEngine,
                                                             prefix: str, tmp_path: Path) -> None:  # fmt: skip
    """What a reboot takes besides the processes: network namespaces (``/run``), links (bridges,
    veths), the rootfs mounts and the network's DNS servers. ``boot`` makes them again."""
    stack, net, web, client = f"{prefix}r", f"{prefix}net", f"{prefix}web", f"{prefix}client"
    serve = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"
    manifest = tmp_path / "r.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {net}, stack: {stack}}}\n"

        + container(web, stack, "always", serve).replace("networkMode: none", f"networks: [{{name: {net}}}], "
                                                                          "ports: ['127.0.0.1::8080']")
        + container(client, stack, "always").replace("networkMode: none", f"networks: [{{name: {net}}}]")
    )  # fmt: skip
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    (port,) = engine.observe().containers[web].published_ports
    url = "http://127.0.0.1:" + port.split("->")[0].rsplit(":", 1)[1] + "/"
    assert eventually(lambda: fetch(url), what="the published port") == b"hello\n"

    for name in (web, client):
        keeper = json.loads((directory(engine, name) / "supervisor.pid.json").read_text())
        os.kill(int(keeper["pid"]), signal.SIGKILL)
    for name in (web, client):
        os.kill(int((directory(engine, name) / "init.pid").read_text()), signal.SIGKILL)
    network = engine.networks.get(net)
    assert network is not None
    os.kill(int((loaded / "networks" / net / "dns.pid").read_text()), signal.SIGKILL)
    eventually(lambda: all(engine.observe().containers[n].state != "running" for n in (web, client)),
               what="the containers down")  # fmt: skip
    shutil.rmtree(loaded / "runtime")
    for name in (web, client):
        container_id = engine.records.get(name).container_id
        subprocess.run(["umount", str(directory(engine, name) / "rootfs")], check=True)
        subprocess.run(["ip", "netns", "delete", f"rc-{container_id[:12]}"], check=True)
    subprocess.run(["ip", "link", "delete", network.bridge], check=True)

    booted = reconcile(loaded, "boot")
    assert booted.returncode == 0, booted.stdout + booted.stderr
    assert eventually(lambda: fetch(url), what="the published port after the reboot") == b"hello\n"
    looked_up = engine.exec(client, ["wget", "-qO-", f"http://{web}:8080/"], timeout=20)
    assert looked_up.stdout == b"hello\n", looked_up


@pytest.mark.integration
def test_a_stop_cut_short_does_not_keep_the_restart_policy_off(loaded: Path, engine: native_engine.NativeEngine,
                                                               prefix: str, tmp_path: Path) -> None:  # fmt: skip
    web = f"{prefix}web"
    manifest = tmp_path / "s.yaml"
    manifest.write_text(container(web, f"{prefix}s", "{policy: always, backoff: {initial: 100ms}}"))
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    marker = directory(engine, web) / "stopping"

    # A stopper killed right after its first step: its marker names a process that is gone, on
    # a container that still runs. The next command's remains collector removes it.
    cut_short = ("import sys, pathlib; from reconciler.backends.native import engine, runs; "
                 "runs.mark_stopping(engine.NativeEngine(pathlib.Path(sys.argv[1])).records.get(sys.argv[2]))")  # fmt: skip
    subprocess.run([sys.executable, "-c", cut_short, str(loaded), web], check=True)
    assert marker.exists()
    engine.observe()
    assert not marker.exists()
    first = engine.observe().containers[web]
    os.kill(int((directory(engine, web) / "init.pid").read_text()), signal.SIGKILL)
    eventually(lambda: engine.observe().containers[web].restart_count == first.restart_count + 1
               and engine.observe().containers[web].state == "running", what=f"{web} restarted")  # fmt: skip

    # A stop under way (its writer lives: this process) keeps its marker, and the exit it
    # causes starts no restarter.
    native_runs.mark_stopping(engine.records.get(web))
    engine.observe()
    assert marker.exists()
    keeper = int(json.loads((directory(engine, web) / "supervisor.pid.json").read_text())["pid"])
    before = decisions(engine, web)
    os.kill(int((directory(engine, web) / "init.pid").read_text()), signal.SIGKILL)
    eventually(lambda: not Path(f"/proc/{keeper}").exists(), what="the keeper gone")
    assert decisions(engine, web) == before
    assert engine.observe().containers[web].state == "exited"
