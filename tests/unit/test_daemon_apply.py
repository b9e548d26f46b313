"""``reconcile apply`` through the daemon does what it does embedded: ``--force-recreate`` and
Ctrl-C (the daemon starts no new step, the answer says what was done and what was not, exit 130)."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, client, plans
from reconciler.cli import apply
from tests.support.polling import eventually
from tests.unit.controller_support import Harness, container_yaml, served_controller


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    with served_controller(tmp_path) as serving:
        yield serving


def arguments(socket_path: str, manifest: Path, *, force_recreate: list[str] | None = None) -> argparse.Namespace:
    return argparse.Namespace(engine="memory", root="/nonexistent", socket=socket_path, output="text", prune=True,
                              prune_volumes=False, parallelism=1, wait=False, yes=True, file=[str(manifest)],
                              force_recreate=force_recreate or [])  # fmt: skip


def test_force_recreate_goes_through_the_daemon(
    served: tuple[Harness, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness, socket_path = served
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(container_yaml("web"))
    before = harness.engine.containers["web"].container_id
    assert apply.apply_via_daemon(arguments(socket_path, manifest)) == 0
    assert harness.engine.containers["web"].container_id == before, "unchanged: kept"
    assert apply.apply_via_daemon(arguments(socket_path, manifest, force_recreate=["web"])) == 0
    assert harness.engine.containers["web"].container_id != before
    assert "recreate, forced (--force-recreate)" in capsys.readouterr().out


def test_ctrl_c_through_the_daemon_stops_new_steps_and_exits_130(
    served: tuple[Harness, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    harness, socket_path = served
    manifest = tmp_path / "many.yaml"
    manifest.write_text("---\n".join(container_yaml(f"c{i}", stack="many") for i in range(6)))
    create = harness.engine.create_container
    cancelled: list[bool] = []
    main = threading.main_thread().ident
    assert main is not None

    def create_then_interrupt(request: plans.ContainerRequest) -> str:
        # The user's Ctrl-C while the daemon runs this step: SIGINT to the CLI's (main) thread,
        # which waits for the daemon's answer.
        if request.name == "c0":
            signal.pthread_kill(main, signal.SIGINT)
            # The step stays in flight until the daemon heard the CLI's cancel.
            eventually(lambda: bool(cancelled), what="the CLI's cancel")
        return create(request)

    monkeypatch.setattr(harness.engine, "create_container", create_then_interrupt)

    def cancel(self: client.Client, apply_id: str) -> bool:
        cancelled.append(CANCEL(self, apply_id))
        return cancelled[-1]

    monkeypatch.setattr(client.Client, "cancel", cancel)
    assert apply.apply_via_daemon(arguments(socket_path, manifest)) == 130
    captured = capsys.readouterr()
    assert cancelled == [True], "the CLI told the daemon, which knew that apply"
    assert "Interrupt received, finishing the steps in flight" in captured.err
    assert "Interrupted: " in captured.out and " not started of " in captured.out
    made = {name for name in harness.engine.containers if name.startswith("c")}
    assert made == {"c0"}, "the step in flight finished, none started after it"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


CANCEL = client.Client.cancel


def test_a_cancel_of_an_unknown_apply_says_so(served: tuple[Harness, str]) -> None:
    _, socket_path = served
    assert client.Client(socket_path).cancel("no-such-apply") is False
    cancels = api.Cancels()
    with cancels.registered("a1") as event:
        assert cancels.cancel("a1") and event.is_set()
    assert not cancels.cancel("a1"), "forgotten once the apply ended"
