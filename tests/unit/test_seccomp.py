"""The default seccomp profile: Docker's semantics (issue 10, finding 1), checked on the OCI data."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from reconciler.backends.native import bundles, seccomp

NAMESPACES_AND_MOUNTS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
    "open_tree", "move_mount", "mount_setattr", "bpf", "perf_event_open", "clone3",
)  # fmt: skip
KEYRING = ("keyctl", "add_key", "request_key")


def profile(*added: str, machine: str = "x86_64", kernel: str = "6.1.0") -> dict[str, Any]:
    return seccomp.profile([*bundles.DEFAULT_CAPABILITIES, *added], machine=machine, kernel=kernel)


def allowed(value: dict[str, Any]) -> set[str]:
    """Names allowed whatever their arguments."""
    return {
        name
        for rule in value["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }


def rules_for(value: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in value["syscalls"] if name in rule["names"]]


def test_unlisted_calls_fail_with_eperm() -> None:
    value = profile()
    assert (value["defaultAction"], value["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", errno.EPERM)
    # clone and socket are allowed by argument only (see below).
    assert {"read", "execve", "clone", "socket"} & allowed(value) == {"read", "execve"}
    assert "kexec_load" not in allowed(value) and "reboot" not in allowed(value)


def test_default_container_may_not_make_namespaces_mounts_or_keys() -> None:
    value = profile()
    assert not (set(NAMESPACES_AND_MOUNTS) | set(KEYRING)) & allowed(value)
    # clone only without namespace flags (a masked compare), clone3 answers ENOSYS so libc falls back.
    (clone,) = rules_for(value, "clone")
    assert clone["args"] == [{"index": 0, "value": seccomp.CLONE_NAMESPACES, "op": "SCMP_CMP_MASKED_EQ"}]
    assert seccomp.CLONE_NAMESPACES == 0x7E020000
    (clone3,) = rules_for(value, "clone3")
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", errno.ENOSYS)


def test_sys_admin_unlocks_namespaces_and_mounts_but_not_the_keyring() -> None:
    value = profile("CAP_SYS_ADMIN")
    names = allowed(value)
    # pivot_root stays denied, as in Docker: a container has no use for it, runc made its root.
    assert set(NAMESPACES_AND_MOUNTS) - {"pivot_root"} <= names
    assert {"clone", "clone3"} <= names
    assert not (set(KEYRING) | {"pivot_root"}) & names
    assert all(rule.get("action") == "SCMP_ACT_ALLOW" for rule in rules_for(value, "clone3"))


@pytest.mark.parametrize(
    ("capability", "calls"),
    [
        ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_SYS_NICE", {"mbind", "set_mempolicy"}),
        ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
        ("CAP_SYS_PACCT", {"acct"}),
        ("CAP_SYSLOG", {"syslog"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_PERFMON", {"perf_event_open"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
    ],
)
def test_capability_groups(capability: str, calls: set[str]) -> None:
    assert not calls & allowed(profile())
    assert calls <= allowed(profile(capability))


def test_chroot_follows_the_default_capability() -> None:
    assert "chroot" in allowed(profile())
    dropped = [cap for cap in bundles.DEFAULT_CAPABILITIES if cap != "CAP_SYS_CHROOT"]
    assert "chroot" not in allowed(seccomp.profile(dropped, machine="x86_64", kernel="6.1.0"))


def test_ptrace_needs_a_kernel_that_filters_traced_calls() -> None:
    assert "ptrace" in allowed(profile(kernel="4.8.0"))
    assert "ptrace" not in allowed(profile(kernel="4.4.0-210-generic"))
    assert "ptrace" in allowed(profile("CAP_SYS_PTRACE", kernel="4.4.0"))


def test_architectures() -> None:
    x86 = profile(machine="x86_64")
    assert x86["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert {"arch_prctl", "modify_ldt"} <= allowed(x86)
    arm = profile(machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed(arm) and {"set_tls", "cacheflush"} <= allowed(arm)


def test_socket_families_and_personalities_are_filtered_by_argument() -> None:
    value = profile()
    sockets = [rule["args"][0] for rule in rules_for(value, "socket")]
    assert {(arg["op"], arg["value"]) for arg in sockets} == {
        ("SCMP_CMP_LT", 38),  # below AF_ALG
        ("SCMP_CMP_EQ", 39),  # between AF_ALG and AF_VSOCK
        ("SCMP_CMP_GT", 40),  # above AF_VSOCK
    }
    assert {rule["args"][0]["value"] for rule in rules_for(value, "personality")} == set(seccomp.PERSONALITIES)
