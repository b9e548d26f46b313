"""Units of the manifests: durations, sizes and signals, parsed from what users write and formatted back.

The bottom of :mod:`reconciler.manifests`: plain functions over the standard library that the field
types (:mod:`.fields`) validate with and that messages and plans format with. Each parser raises
``ValueError`` with the message a user sees (the loader positions it). This module must not import
pydantic, YAML or anything else of the project.
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: object) -> float:
    """``"1m30s"`` → 90.0 seconds. Go's duration syntax, which Docker and compose users know.

    A bare number is seconds. Negative durations are rejected: nothing here waits backwards.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 100ms, 10s or 1m30s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 100ms, 10s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration; use e.g. 100ms, 10s, 1m30s, 2h")
    return total


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B|b)?$")
# Uppercase letters are Kubernetes' (``M`` = 1000², ``Mi`` = 1024²); a lowercase letter alone is
# Docker's (``docker run -m 64m`` is 64 MiB), so that a value copied from a compose file or a
# ``docker run`` line means here what it meant there.
_SIZE_UNITS = {
    "": 1, "b": 1, "B": 1,
    "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
    "T": 1000**4, "TB": 1000**4, "P": 1000**5, "PB": 1000**5,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5,
}  # fmt: skip


def parse_size(value: object) -> int:
    """``"256Mi"`` → 268435456 bytes. Kubernetes suffixes (``Ki`` = 1024, ``K`` = 1000), Docker's
    lowercase letters (``k`` = 1024, ``64m`` = 64 MiB); bare numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64Mi, 1G or 1048576")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as 64Mi, 1G or 1048576")
    match = _SIZE_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size; use e.g. 64Mi, 512M, 1Gi or a number of bytes")
    try:
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])
    except OverflowError:  # more digits than a float holds: not a size any host has
        raise ValueError(f"{value[:20]!r}... is too large to be a size") from None


def format_size(size: int) -> str:
    """The shortest exact binary-suffixed text of a size (``268435456`` → ``256Mi``)."""
    for suffix, unit in (("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


_SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16,
    "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24,
    "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip


def parse_signal(value: object) -> str:
    """``SIGTERM``, ``TERM`` or ``15`` → the canonical ``SIGTERM`` spelling; ValueError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in _SIGNALS.items():
            if number == value:
                return f"SIG{name}"
        raise ValueError(f"{value} is not a signal number")
    if isinstance(value, str):
        name = value.upper().removeprefix("SIG")
        if name.isdigit():
            return parse_signal(int(name))
        if name in _SIGNALS:
            return f"SIG{name}"
    raise ValueError(f"{value!r} is not a signal; use e.g. SIGTERM, SIGINT or 15")
