"""``reconcile status`` shows every owned object with the same columns and JSON keys, daemon or
not: objects of stacks outside the daemon's folder too, with IMAGE, PORTS and AGE, and a HEALTH
that says "none" when a container has no health check."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from reconciler import api, client, observed
from reconciler.cli import options, status
from tests.unit.controller_support import IMAGE, Harness, container_yaml
from tests.unit.helpers import apply, load

OTHER_STACK = f"""\
apiVersion: reconciler/v1
kind: Network
metadata: {{name: elsewhere-net, stack: elsewhere}}
---
apiVersion: reconciler/v1
kind: Volume
metadata: {{name: elsewhere-data, stack: elsewhere}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: outsider, stack: elsewhere}}
spec:
  image: {IMAGE}
  ports:
    - {{containerPort: 80, hostPort: 8080}}
    - {{containerPort: 53, protocol: udp}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: checked, stack: elsewhere}}
spec:
  image: {IMAGE}
  healthcheck: {{test: [CMD, "true"], interval: 5s, timeout: 1s, retries: 1}}
"""


def _args(root: Path, output: str) -> argparse.Namespace:
    return argparse.Namespace(engine="memory", root=str(root), socket=None, output=output, file=None)


def _both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: str
) -> tuple[str, str]:
    """``status`` through a real API server of a daemon whose folder declares only ``web``, then
    embedded on the same engine: each one's stdout."""
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    apply(harness.engine, load(OTHER_STACK, "elsewhere.yaml"))  # a stack no file in the folder declares
    harness.settle()
    root = tmp_path / "root"
    monkeypatch.setattr(client, "DEFAULT_ROOT", str(root))
    monkeypatch.setattr(client, "DEFAULT_SOCKET", str(tmp_path / "run" / "api.sock"))
    monkeypatch.setattr(options, "open_engine", lambda chosen: harness.engine)
    server = api.Server(harness.controller, socket_path=client.DEFAULT_SOCKET, root=str(root.resolve()),
                        poll_interval=0.05)  # fmt: skip
    server.start()
    try:
        assert status.status_via_daemon(_args(root, output)) == 0
        through_daemon = capsys.readouterr().out
    finally:
        server.stop()
    assert status.cmd_status(_args(root, output)) == 0, "no daemon now: embedded"
    return through_daemon, capsys.readouterr().out


def test_json_rows_have_the_same_keys_and_list_objects_outside_the_daemons_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon_text, embedded_text = _both(tmp_path, monkeypatch, capsys, "json")
    daemon, embedded = json.loads(daemon_text), json.loads(embedded_text)
    assert set(daemon) == set(embedded) == {"version", "root", "engine", "objects"}
    for document in (daemon, embedded):
        rows = {(row["kind"], row["name"]): row for row in document["objects"]}
        assert {("Container", "web"), ("Container", "outsider"), ("Network", "elsewhere-net"),
                ("Volume", "elsewhere-data")} <= set(rows)  # fmt: skip
        assert {tuple(sorted(row)) for row in document["objects"]} == {tuple(sorted(status.ROW_DEFAULTS))}
        outsider = rows[("Container", "outsider")]
        assert outsider["image"] == IMAGE
        assert outsider["ports"] == ["0.0.0.0:8080->80/tcp", "53/udp"]
        assert outsider["startedAt"] is not None and outsider["createdAt"] is not None


def test_the_table_has_the_same_columns_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon, embedded = _both(tmp_path, monkeypatch, capsys, "text")
    for text in (daemon, embedded):
        lines = text.splitlines()
        assert lines[0].split() == list(status.HEADER)
        assert "IMAGE" in lines[0] and "PORTS" in lines[0] and "AGE" in lines[0]
        outsider = next(line for line in lines if line.split()[1] == "outsider")
        assert "0.0.0.0:8080->80/tcp,53/udp" in outsider and IMAGE in outsider
        assert outsider.split()[4] == status.NO_HEALTH_CHECK, "no health check says so, not a blank"
        assert any(line.split()[:2] == ["Volume", "elsewhere-data"] for line in lines)
        checked = next(line for line in lines if line.split()[1] == "checked")
        assert checked.split()[4] == "unknown", "a health check nobody probes (not this daemon's folder) is no 'none'"


def test_age_counts_from_the_creation_as_docker_ps_and_kubectl_do() -> None:
    row = {**status.ROW_DEFAULTS, "kind": "Container", "name": "c", "state": "running",
           "createdAt": 1000.0, "startedAt": 7000.0}  # fmt: skip
    assert status.cells(row, now=1000.0 + 2 * 3600)[9] == "2h", "a restart 1h40m ago does not reset it"
    assert status.cells({**row, "createdAt": None}, now=7060.0)[9] == "1m", "an engine without it: since the start"


def test_age_reads_like_kubectl() -> None:
    assert [status.age_text(s) for s in (0, 45, 60, 299, 7200, 3 * 86400 + 5)] == ["0s", "45s", "1m", "4m", "2h", "3d"]
    assert status.age_text(-3) == "0s", "a clock a little behind the engine's is no negative age"


def test_published_ports_come_from_the_recorded_spec() -> None:
    spec = '{"spec": {"ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}]}}'
    container = observed.ObservedContainer(name="c", labels={observed.LABEL_SPEC: spec}, container_id="x",
                                           image="i", image_id="d", state="running")  # fmt: skip
    assert container.published_ports == ("127.0.0.1:8080->80/tcp",)
    assert dataclasses.replace(container, labels={}).published_ports == (), "no recorded spec: none known"
