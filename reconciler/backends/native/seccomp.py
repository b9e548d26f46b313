"""The default seccomp filter of native containers: Docker's default profile, as data.

The semantics are moby's ``profiles/seccomp`` default (written here as our own table, not a copy):
everything not listed fails with ``EPERM``; a fixed allowlist of ordinary calls; and groups that
only a container holding a capability may use. Above all, whatever creates namespaces or mounts
(``unshare``, ``setns``, ``mount``, the new mount API, namespace flags to ``clone``, ``bpf``,
``perf_event_open``...) needs ``CAP_SYS_ADMIN`` (``capAdd: [SYS_ADMIN]``): a user namespace
would give an unprivileged process a "root" that may mount filesystems, the start of many kernel
exploits. Without it ``clone3`` fails with ``ENOSYS`` (its flags are in memory, out of a
filter's reach), so the C library falls back to ``clone``, whose flags are checked. Keyring
calls (``keyctl``, ``add_key``, ``request_key``) are not allowed at all, as in Docker: the
keyring is not namespaced.

:func:`profile` turns the table into the OCI ``linux.seccomp`` object for one container's
effective capability set and the host's architecture (with its 32-bit companions, so a 32-bit
binary is filtered too). Names the host's libseccomp does not know are skipped by runc.
:func:`from_document` replaces the table with a profile the manifest names
(``securityOpt: [seccomp=FILE]``, read by :mod:`bundles`). Pure: no I/O but ``uname``.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The architectures a filter covers on each host: the native one and those its CPU also runs.
ARCHITECTURES: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


def _names(text: str) -> tuple[str, ...]:
    """A table's call names, written as words (a list literal of 360 strings reads worse)."""
    return tuple(text.split())


# Calls every container may make.
ALLOWED = _names("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync
fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname getsockopt
gettid gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit
ioctl ioprio_get ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
lchown lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename renameat renameat2
restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list set_thread_area set_tid_address setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid
setsockopt setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64
ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice
wait4 waitid waitpid write writev
""")

# Calls a capability unlocks (the call also needs the capability itself, checked by the kernel).
BY_CAPABILITY: Mapping[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": _names("""
        bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie lsm_get_self_attr
        lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount open_tree perf_event_open quotactl
        quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare
    """),
    "CAP_BPF": ("bpf",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "finit_module", "init_module"),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("ioperm", "iopl"),
    "CAP_SYS_TIME": ("clock_settime", "clock_settime64", "settimeofday", "stime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYSLOG": ("syslog",),
}

# Calls only some architectures have (or need): host machine → names.
BY_MACHINE: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("arch_prctl", "modify_ldt"),
    "aarch64": ("arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"),
}

# Since Linux 4.8 a traced process's calls are filtered after the tracer changed them; before
# that, ``ptrace`` could bypass the filter, so it needs CAP_SYS_PTRACE there.
PTRACE = ("process_vm_readv", "process_vm_writev", "ptrace")
PTRACE_SAFE_SINCE = (4, 8)

# Namespace flags no process without CAP_SYS_ADMIN may pass to clone (NEWNS, NEWCGROUP, NEWUTS,
# NEWIPC, NEWUSER, NEWPID, NEWNET).
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# personality(2) values that only pick an execution domain (Linux, 32-bit, and both with
# address randomisation turned off), and 0xffffffff which just queries.
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

# socket(2) for every family but AF_ALG (38, the kernel's crypto API) and AF_VSOCK (40).
AF_ALG, AF_VSOCK = 38, 40


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    names: tuple[str, ...]
    args: tuple[Mapping[str, Any], ...] = ()
    errno: int | None = None

    def to_oci(self) -> dict[str, Any]:
        oci: dict[str, Any] = {"names": list(self.names)}
        if self.errno is None:
            oci["action"] = "SCMP_ACT_ALLOW"
        else:
            oci |= {"action": "SCMP_ACT_ERRNO", "errnoRet": self.errno}
        if self.args:
            oci["args"] = [dict(arg) for arg in self.args]
        return oci


def _arg(op: str, value: int, *, index: int = 0) -> Mapping[str, Any]:
    # For SCMP_CMP_MASKED_EQ ``value`` is the mask and ``valueTwo`` (absent: 0) what must remain.
    return {"index": index, "value": value, "op": op}


def kernel_version(text: str) -> tuple[int, ...]:
    """A kernel release (``uname -r``, e.g. ``6.1.0-18-amd64``) as numbers to compare: (6, 1, 0)."""
    parts = []
    for piece in text.split("-", maxsplit=1)[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def rules(capabilities: Iterable[str], *, machine: str, kernel: tuple[int, ...]) -> list[Rule]:
    """The allow rules (and ``clone3``'s ENOSYS) for a container holding ``capabilities``."""
    caps = set(capabilities)
    found = [Rule(ALLOWED + BY_MACHINE.get(machine, ()))]
    if kernel >= PTRACE_SAFE_SINCE:
        found.append(Rule(PTRACE))
    found += [
        Rule(("socket",), (_arg("SCMP_CMP_LT", AF_ALG),)),
        Rule(("socket",), (_arg("SCMP_CMP_EQ", AF_ALG + 1),)),
        Rule(("socket",), (_arg("SCMP_CMP_GT", AF_VSOCK),)),
    ]
    found += [Rule(("personality",), (_arg("SCMP_CMP_EQ", value),)) for value in PERSONALITIES]
    found += [Rule(BY_CAPABILITY[cap]) for cap in sorted(caps & BY_CAPABILITY.keys())]
    if "CAP_SYS_ADMIN" not in caps:
        # s390 passes clone's flags second; every other architecture first.
        flags = 1 if machine == "s390x" else 0
        found.append(Rule(("clone",), (_arg("SCMP_CMP_MASKED_EQ", CLONE_NAMESPACES, index=flags),)))
        found.append(Rule(("clone3",), errno=errno.ENOSYS))
    return found


def profile(capabilities: Sequence[str], *, machine: str | None = None, kernel: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container holding ``capabilities``."""
    machine = machine or platform.machine()
    release = kernel_version(kernel or os.uname().release)
    result: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "syscalls": [rule.to_oci() for rule in rules(capabilities, machine=machine, kernel=release)],
    }
    if machine in ARCHITECTURES:
        result["architectures"] = list(ARCHITECTURES[machine])
    return result


# Go's names of the architectures, which a profile's ``includes``/``excludes`` ``arches`` use.
GO_ARCHITECTURES: Mapping[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}


def _applies(rule: Mapping[str, Any], caps: set[str], machine: str, release: tuple[int, ...]) -> bool:
    """Whether a profile's rule is for this container: every capability and architecture its
    ``includes`` names, none its ``excludes`` names, and a kernel at least its ``minKernel``."""
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    arch = GO_ARCHITECTURES.get(machine, machine)
    if not set(includes.get("caps") or ()) <= caps or caps & set(excludes.get("caps") or ()):
        return False
    if (includes.get("arches") and arch not in includes["arches"]) or arch in (excludes.get("arches") or ()):
        return False
    return not includes.get("minKernel") or release >= kernel_version(str(includes["minKernel"]))


def from_document(
    document: Mapping[str, Any], capabilities: Sequence[str], *, machine: str | None = None, kernel: str | None = None
) -> dict[str, Any]:
    """A profile in Docker's format (``securityOpt: [seccomp=FILE]``) as the OCI ``linux.seccomp``
    object for a container holding ``capabilities``, as dockerd turns one into its runtime spec:
    the ``archMap`` entry of the host's architecture gives the architectures, and the rules that
    are not for this container (see :func:`_applies`) are left out. A profile already in the
    runtime's format passes through the same way."""
    machine = machine or platform.machine()
    release = kernel_version(kernel or os.uname().release)
    native = ARCHITECTURES.get(machine, ("",))[0]
    architectures = list(document.get("architectures") or [])
    for entry in document.get("archMap") or ():
        if entry.get("architecture") == native:
            architectures = [native, *(entry.get("subArchitectures") or ())]
    syscalls = []
    for rule in document.get("syscalls") or ():
        if _applies(rule, set(capabilities), machine, release):
            call = {"names": list(rule.get("names") or [rule["name"]]), "action": rule["action"]}
            call |= {key: rule[key] for key in ("args", "errnoRet") if rule.get(key) is not None}
            syscalls.append(call)
    result = {"defaultAction": document["defaultAction"], "architectures": architectures, "syscalls": syscalls}
    result |= {key: document[key] for key in ("defaultErrnoRet", "flags") if document.get(key) is not None}
    return result
