"""The default seccomp profile for native containers, read from the host at run time.

Docker filters system calls by default (no ``keyctl``, ``bpf``, ``setns``, ``kexec_*`` ...). We do
not ship a copy of anyone's profile: we read the one Debian's ``golang-github-containers-common``
installs (``/usr/share/containers/seccomp.json``, podman's) and convert it to the OCI form the
way moby does: keep a rule only when its ``includes`` hold (architecture, every capability in the
container's set, minimum kernel) and its ``excludes`` do not.

Architecture names in ``includes``/``excludes`` are Go's (``amd64``), not the kernel's
(``x86_64``): getting that wrong drops ``arch_prctl`` (allowed on amd64 only), and every static
binary dies at start. Pure apart from reading the profile file.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler import errors

PROFILE = Path("/usr/share/containers/seccomp.json")
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def _kernel_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-", maxsplit=1)[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.Unavailable(
            f"the default seccomp profile {path} is missing: apt-get install golang-github-containers-common"
        ) from None
    if not isinstance(value, dict) or "syscalls" not in value:
        raise errors.RuntimeFailed(f"{path} is not a seccomp profile")
    return value


def profile(
    capabilities: Sequence[str],
    *,
    path: Path = PROFILE,
    machine: str | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container holding ``capabilities``."""
    source = _load(path)
    machine = machine or platform.machine()
    go_arch = _GO_ARCH.get(machine, machine)
    kernel_version = _kernel_version(kernel or os.uname().release)
    caps = set(capabilities)
    architectures: list[str] = []
    for entry in source.get("archMap", []):
        if entry.get("architecture") == _SCMP_ARCH.get(machine):
            architectures = [entry["architecture"], *entry.get("subArchitectures", [])]
    rules = []
    for rule in source["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("arches") and go_arch not in includes["arches"]:
            continue
        if not set(includes.get("caps") or []) <= caps:
            continue
        if includes.get("minKernel") and kernel_version < _kernel_version(includes["minKernel"]):
            continue
        if go_arch in (excludes.get("arches") or []) or caps & set(excludes.get("caps") or []):
            continue
        kept: dict[str, Any] = {"names": list(rule["names"]), "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                kept[key] = rule[key]
        rules.append(kept)
    result: dict[str, Any] = {"defaultAction": source["defaultAction"], "syscalls": rules}
    if source.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = source["defaultErrnoRet"]
    if architectures:
        result["architectures"] = architectures
    return result
