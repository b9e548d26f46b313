"""``reconcile apply`` on a terminal asks before pruning, through the installed command in a pty:
applying one container of a two-container stack shows the other as "(not in the files given:
removed)" and asks; "no" exits 1 and changes nothing, "yes" removes it. Without a terminal
(stdout piped) the same apply runs without asking."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import cli, images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


def container(name: str, stack: str) -> str:
    return (f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\n"
            f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], networkMode: none, stopTimeout: 1s}}\n")  # fmt: skip


def in_pty(command: list[str], answer: str) -> tuple[int, str]:
    """Run ``command`` on a terminal; type ``answer`` once it asks."""

    def talk(controller: int, seen: bytearray) -> None:
        eventually(lambda: cli.shows(controller, seen, b"Only 'yes' is accepted:"), what="the confirmation prompt")
        os.write(controller, answer.encode() + b"\n")

    return cli.in_pty(command, talk=talk)


@pytest.mark.integration
def test_apply_on_a_terminal_asks_before_pruning(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    full, partial = tmp_path / "full.yaml", tmp_path / "partial.yaml"
    full.write_text(container(f"{prefix}a", f"{prefix}s") + container(f"{prefix}b", f"{prefix}s"))
    partial.write_text(container(f"{prefix}a", f"{prefix}s"))
    base = cli.base(loaded)
    subprocess.run([*base, "apply", "-f", str(full)], cwd="/", check=True, capture_output=True)
    assert set(engine.observe().containers) == {f"{prefix}a", f"{prefix}b"}

    code, text = in_pty([*base, "apply", "-f", str(partial)], "no")
    assert code == 1, text
    assert f"container {prefix}b ({prefix}s): remove, orphan (not in the files given: removed)" in text
    assert "Apply cancelled; nothing was changed." in text
    assert set(engine.observe().containers) == {f"{prefix}a", f"{prefix}b"}

    code, text = in_pty([*base, "apply", "-f", str(partial)], "yes")
    assert code == 0, text
    assert set(engine.observe().containers) == {f"{prefix}a"}

    subprocess.run([*base, "apply", "-f", str(full)], cwd="/", check=True, capture_output=True)
    piped = subprocess.run([*base, "apply", "-f", str(partial)], check=False, stdin=subprocess.DEVNULL,
                           cwd="/", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "Only 'yes'" not in piped.stdout
    assert set(engine.observe().containers) == {f"{prefix}a"}
