"""Shared fixtures of the controller unit tests: a fake clock, a memory engine, a manifest folder."""

from __future__ import annotations

import contextlib
import itertools
import textwrap
from collections.abc import Iterator
from pathlib import Path

from reconciler import api, controller, engine, manifests, plans
from reconciler.backends import memory
from reconciler.holds import Holds
from tests.support.polling import eventually

IMAGE = "127.0.0.1:5000/unit/busybox:1"


class FakeClock:
    """Time that moves only when a test says so (both the monotonic and the wall clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def container_yaml(name: str, *, stack: str | None = None, extra: str = "") -> str:
    metadata = f"{{name: {name}{', stack: ' + stack if stack else ''}}}"
    body = f"""\
    apiVersion: reconciler/v1
    kind: Container
    metadata: {metadata}
    spec:
      image: {IMAGE}
    """
    return textwrap.dedent(body) + textwrap.indent(textwrap.dedent(extra), "  ")


class Harness:
    """A controller on a memory engine and a fake clock, driven by hand (no threads)."""

    def __init__(
        self,
        folder: Path,
        *,
        state_dir: Path | None = None,
        engine_restarts: bool = False,
        target: memory.MemoryEngine | None = None,
        holds: Holds | None = None,
    ) -> None:
        """``target``: another harness's engine (a restarted controller finds what the first left)."""
        self.folder = folder
        self.clock = FakeClock()
        self.engine = target or memory.MemoryEngine(images={IMAGE: "sha256:" + "ab" * 32}, clock=self.clock.wall)
        self.controller = controller.Controller(
            self.engine, folder, clock=self.clock, state_dir=state_dir, engine_restarts=engine_restarts,
            relist_interval=20.0, resync_interval=20.0, holds=holds,
        )  # fmt: skip

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def settle(self) -> int:
        """Scan the folder and process every ready key, as after a (debounced) file event."""
        self.controller.file_changed(str(self.folder))
        return self.controller.run_ready()

    def exit(self, name: str, code: int) -> None:
        """The container's process exits; the engine's die event reaches the controller."""
        container_id = self.engine.containers[name].container_id
        self.engine.exit(name, code)
        self.controller.handle_event(engine.Event(self.clock.now, "die", name, container_id, exit_code=code))

    def advance(self, seconds: float) -> int:
        self.clock.advance(seconds)
        self.controller.tick()
        return self.controller.run_ready()

    def row(self, name: str) -> dict[str, object]:
        rows = [r for r in self.controller.status()["objects"] if r["name"] == name]
        assert rows, f"no status row for {name}"
        return rows[0]

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.controller.events_since() if e["kind"] == kind]


def engine_events_read(ctl: controller.Controller) -> float:
    return next(s.value for s in ctl.metric_samples() if s.name == "reconciler_engine_events_total")


def wait_for_event_reader(ctl: controller.Controller, target: memory.MemoryEngine) -> None:
    """Until the controller's event reader is subscribed: it has read an event of an unowned
    container this creates (one per try, so that an event sent before it subscribed is no loss)."""
    before = engine_events_read(ctl)
    numbers = itertools.count()

    def heard() -> bool:
        name = f"unowned-{next(numbers)}"
        target.create_container(plans.ContainerRequest(name=name, spec=manifests.ContainerSpec(image=IMAGE),
                                                       env={}, labels={}))  # fmt: skip
        return engine_events_read(ctl) > before

    eventually(heard, timeout=5.0, interval=0.02, what="the controller's event reader")


@contextlib.contextmanager
def served_controller(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    """A settled controller on the memory engine whose folder holds ``shop.yaml`` (container web),
    its API served on a socket under ``tmp_path``: (the harness, the socket's path)."""
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    socket_path = str(tmp_path / "run" / "api.sock")
    server = api.Server(harness.controller, socket_path=socket_path, poll_interval=0.05)
    server.start()
    try:
        yield harness, socket_path
    finally:
        server.stop()
