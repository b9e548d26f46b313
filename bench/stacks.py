"""The stack the benches apply: one network and ``count`` busybox containers sleeping on it.

Shared by bench/docker_apply.py and bench/native.py (run as ``python bench/<name>.py``, so this
folder is on ``sys.path``), so that both engines are measured on the same manifests.
"""

from __future__ import annotations

from collections.abc import Callable


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
