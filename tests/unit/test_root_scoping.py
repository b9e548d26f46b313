"""``--root`` scopes the daemon: each root's own socket, a daemon that refuses another root's
client (409), and native bridge names unique per root."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, client, errors
from reconciler.backends.native import network_services, networks
from reconciler.cli import options, remote, status
from tests.unit.controller_support import Harness, container_yaml


def test_the_default_root_keeps_the_default_socket_and_another_root_gets_its_own() -> None:
    assert client.socket_for_root("/var/lib/reconciler") == client.DEFAULT_SOCKET
    assert client.socket_for_root("/var/lib/reconciler/") == client.DEFAULT_SOCKET
    first, second = client.socket_for_root("/tmp/empty"), client.socket_for_root("/tmp/other")
    assert first != second and client.DEFAULT_SOCKET not in (first, second)
    assert Path(first).parent == Path(client.DEFAULT_SOCKET).parent
    assert client.socket_for_root("/tmp/x/../empty") == first, "the same folder, however it is written"
    assert len(client.socket_for_root("/deep/" + "a" * 300).encode()) < 108, "fits a unix socket's path"


def test_the_cli_derives_the_socket_from_the_root_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_SOCKET", raising=False)
    monkeypatch.delenv("RECONCILER_ROOT", raising=False)
    from reconciler import cli

    parser = cli.build_parser()
    assert options.of(parser.parse_args(["status"])).socket == client.DEFAULT_SOCKET
    scoped = options.of(parser.parse_args(["--root", "/tmp/empty", "plan", "-f", "x.yaml"]))
    assert scoped.socket == client.socket_for_root("/tmp/empty") != client.DEFAULT_SOCKET
    assert (
        options.of(parser.parse_args(["plan", "-f", "x.yaml", "--root", "/tmp/empty", "--socket", "/s"])).socket == "/s"
    )
    monkeypatch.setenv("RECONCILER_SOCKET", "/env.sock")
    assert options.of(cli.build_parser().parse_args(["--root", "/tmp/empty", "status"])).socket == "/env.sock"


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    return harness


@pytest.fixture
def default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harness: Harness) -> Iterator[Path]:
    """A daemon of the (stand-in) default root, on the (stand-in) default socket."""
    root = tmp_path / "default-root"
    monkeypatch.setattr(client, "DEFAULT_ROOT", str(root))
    monkeypatch.setattr(client, "DEFAULT_SOCKET", str(tmp_path / "run" / "api.sock"))
    server = api.Server(harness.controller, socket_path=client.DEFAULT_SOCKET, root=str(root.resolve()),
                        poll_interval=0.05)  # fmt: skip
    server.start()
    yield root
    server.stop()


def _args(root: Path, socket: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(engine="memory", root=str(root), socket=socket, output="json", file=None)


def test_a_command_on_another_root_does_not_reach_the_default_roots_daemon(
    default_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status.status_via_daemon(_args(default_root)) == 0, "the default root's daemon serves its own root"
    assert "web" in capsys.readouterr().out
    assert remote.daemon_client(options.of(_args(tmp_path / "empty"))) is None, "another root: embedded"


def test_a_socket_of_another_roots_daemon_is_an_error_naming_both_roots(default_root: Path, tmp_path: Path) -> None:
    chosen = options.of(_args(tmp_path / "empty", socket=client.DEFAULT_SOCKET))
    with pytest.raises(errors.ReconcilerError) as caught:
        remote.daemon_client(chosen)
    message = str(caught.value)
    assert str(default_root.resolve()) in message and str((tmp_path / "empty").resolve()) in message


def test_the_daemon_refuses_a_client_of_another_root_or_engine_with_409(default_root: Path, tmp_path: Path) -> None:
    served = str(default_root.resolve())
    healthz = client.Client(client.DEFAULT_SOCKET, timeout=10).ping()
    assert healthz == {"ok": True, "engine": "memory", "root": served}
    assert "objects" in client.Client(client.DEFAULT_SOCKET, timeout=10, root=served, engine="memory").status()
    other = str(tmp_path / "elsewhere")
    for root, engine in ((other, "memory"), (served, "docker")):
        stranger = client.Client(client.DEFAULT_SOCKET, timeout=10, root=root, engine=engine)
        with pytest.raises(client.ApiError) as caught:
            stranger.status()
        assert caught.value.status == 409 and caught.value.body["kind"] == "target"
        assert served in str(caught.value) and root in str(caught.value) and engine in str(caught.value)
        with pytest.raises(client.ApiError, match="this daemon serves root"):
            stranger.plan([], prune=True, prune_volumes=False)
        with pytest.raises(client.ApiError, match="this daemon serves root"):
            list(stranger.events(follow=False))


def test_bridge_names_depend_on_the_root_and_fit_an_interface_name(tmp_path: Path) -> None:
    one, two = tmp_path / "one" / "networks", tmp_path / "two" / "networks"
    assert networks.bridge_name("web", one) != networks.bridge_name("web", two)
    assert networks.bridge_name("web", one) == networks.bridge_name("web", tmp_path / "x" / ".." / "one" / "networks")
    assert all(len(networks.bridge_name(n, one)) <= 15 for n in ("web", "a" * 200))
    assert networks.bridge_name("web", one) != networks.legacy_bridge_name("web")


def test_a_network_recorded_with_its_old_bridge_keeps_it_and_its_rules_owner(tmp_path: Path) -> None:
    """An upgrade does not rename (and so recreate) the default root's existing networks."""
    store = networks.Networks(tmp_path / "networks")
    legacy = networks.Network(name="web", bridge=networks.legacy_bridge_name("web"), subnet="10.233.0.0/24",
                              gateway="10.233.0.1", internal=False, labels={})  # fmt: skip
    (tmp_path / "networks" / "web").mkdir(parents=True)
    (tmp_path / "networks" / "web" / "network.json").write_text(json.dumps(legacy.to_json()))
    assert store.get("web") == legacy
    assert network_services.rules_owner(legacy) == "web", "its rules were tagged by name"
    fresh = networks.Network(name="web", bridge=networks.bridge_name("web", store.root), subnet="10.233.1.0/24",
                             gateway="10.233.1.1", internal=False, labels={})  # fmt: skip
    assert network_services.rules_owner(fresh) == fresh.bridge


def test_status_names_the_root_and_engine_through_the_daemon_and_embedded(
    default_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = str(default_root.resolve())
    assert status.status_via_daemon(_args(default_root)) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == 1 and document["root"] == served and document["engine"] == "memory"
    assert any(row["name"] == "web" for row in document["objects"])
    text_args = _args(default_root)
    text_args.output = "text"
    assert status.status_via_daemon(text_args) == 0
    captured = capsys.readouterr()
    assert captured.out.split()[0] == "KIND", "stdout stays the table"
    assert captured.err.strip() == f"root {served}, engine memory, through the daemon on {client.DEFAULT_SOCKET}"

    from reconciler.backends import memory

    monkeypatch.setattr(options, "open_engine", lambda chosen: memory.MemoryEngine())
    empty = tmp_path / "empty"
    assert status.cmd_status(_args(empty)) == 0, "another root: embedded, on its own (empty) state"
    document = json.loads(capsys.readouterr().out)
    assert document == {"version": 1, "root": str(empty.resolve()), "engine": "memory", "objects": []}
