"""Docker backend, errors: the docker SDK's, requests' and sockets' exceptions as the project's own.

Where it sits: the engine wraps every Engine API call in :func:`on` (``with translating.on(...)``)
so that what leaves the backend is an ``errors.EngineError`` whose message is one line, starts
with the object it is about, and never holds registry credentials (the SDK sends those in a
header only); the library's exception is chained as ``__cause__``. Mapping: daemon unreachable →
``Unavailable``; 404 → ``NotFound``; 409 → ``Conflict`` where it means "the name is taken" (create,
rename) and ``RuntimeFailed`` where it means "the state does not allow it"; anything else the
daemon refuses → ``RuntimeFailed`` carrying the daemon's own words.

It must not call the daemon: it only reads exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler import errors

if TYPE_CHECKING:
    import docker.errors

# How the daemon words a pull failure: the image is missing, or the registry cannot be reached.
_MISSING_MARKERS = ("manifest unknown", "not found", "pull access denied", "repository does not exist")
_UNREACHABLE_MARKERS = ("connection refused", "no such host", "timeout", "network is unreachable")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def daemon_message(exc: docker.errors.APIError) -> str:
    """The daemon's own words (its JSON ``message``), without the SDK's URL and status prefix."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return one_line(explanation or str(exc))


def unreachable_reason(exc: BaseException) -> str:
    """The innermost useful words of a connection failure, e.g. 'No such file or directory'."""
    seen: set[int] = set()
    current: BaseException | None = exc
    deepest = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        deepest = current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    if isinstance(deepest, OSError) and deepest.strerror:
        return deepest.strerror
    text = one_line(str(deepest))
    return text[:200] if text else type(deepest).__name__


def translate(exc: BaseException, subject: str, *, where: str, conflict: bool = False) -> errors.EngineError | None:
    """The project's error for a library error about ``subject``, or None when ``exc`` is not one.

    ``where`` is the daemon's address, named when it cannot be reached.
    """
    # Imported here: the engine's read path works without the SDK (and then raises none of its errors).
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.APIError):
        message = daemon_message(exc)
        status = exc.status_code
        if status == 404:
            return errors.NotFound(f"{subject}: {message}")
        if status == 409 and conflict:
            return errors.Conflict(f"{subject}: {message}")
        if status in (502, 503, 504):
            return errors.Unavailable(f"{subject}: Docker daemon unavailable: {message}")
        return errors.RuntimeFailed(f"{subject}: Docker refused", stderr=message)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError):
        return errors.Unavailable(f"{subject}: Docker daemon unreachable at {where}: {unreachable_reason(exc)}")
    if isinstance(exc, docker.errors.DockerException):
        return errors.RuntimeFailed(f"{subject}: {one_line(str(exc))}")
    return None


class Translating:
    """Context manager turning library errors raised inside it into the project's errors.

    ``conflict`` says whether a 409 means "name taken" here (create, rename) or "state does not
    allow it" (exec on a stopped container, removing a volume in use), which is ``RuntimeFailed``.
    The project's own errors pass through untouched.
    """

    def __init__(self, subject: str, *, where: str, conflict: bool = False) -> None:
        self.subject = subject
        self.where = where
        self.conflict = conflict

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, errors.ReconcilerError):
            return
        translated = translate(exc, self.subject, where=self.where, conflict=self.conflict)
        if translated is not None:
            raise translated from exc


def pull_error(subject: str, message: str) -> errors.EngineError:
    """The error for a failed pull, from the daemon's words (it answers 404 or 500 whatever the cause)."""
    text = one_line(message)
    lowered = text.lower()
    if any(marker in lowered for marker in _MISSING_MARKERS):
        return errors.NotFound(f"{subject}: {text}")
    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return errors.Unavailable(f"{subject}: registry unreachable: {text}")
    return errors.RuntimeFailed(f"{subject}: pull failed", stderr=text)


def on(subject: str, *, where: str, conflict: bool = False) -> Translating:
    """``with translating.on("container web", where=...):`` translates what the block raises."""
    return Translating(subject, where=where, conflict=conflict)
