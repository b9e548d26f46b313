"""The manifest folder watcher: filesystem events → a debounced ``callback(path)``.

A watchdog observer watches one folder (not recursively). Every event on a manifest name
(:func:`reconciler.sources.is_manifest_name`: ``*.yaml``/``*.yml``, not a dotfile, not an
editor artefact such as ``*~``, ``*.swp``, ``4913``, ``#*#``) is *debounced* per path: the
callback runs once the path has been quiet for ``settle`` (50 ms: the end of one write burst), and at most once per
``debounce`` (≈500 ms, as compose watch), so an editor's write-rename-chmod burst or a file being
rewritten in a loop costs one pass per half second, while a single save is seen within ~50 ms
(the folder-latency target is 0.3 s). The receiver re-reads the folder when called, so coalescing
never loses the last state. A move counts for both its source and its destination
(editors save by renaming a temporary file over the manifest).

The callback receives a path and nothing else. This module knows nothing of the controller, the
planner or an engine, and it is the only module that imports watchdog. Missed events (an
overflowing inotify queue, a folder on NFS) are the periodic re-list's business, not this one's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog import events as watchdog_events
from watchdog import observers

from reconciler import sources

DEFAULT_DEBOUNCE = 0.5
DEFAULT_SETTLE = 0.05


class Debouncer:
    """Calls ``callback(key)`` once a key has been quiet for ``settle`` seconds, and at most once
    per ``delay`` seconds per key (a later burst waits for the rest of the interval).

    ``poll(now)`` fires what is due and returns the seconds until the next key is due; the
    threaded mode (``start``) runs the same ``poll`` on a thread. ``clock`` is injectable so that
    unit tests can move time by hand.
    """

    def __init__(
        self,
        callback: Callable[[str], None],
        *,
        delay: float = DEFAULT_DEBOUNCE,
        settle: float = DEFAULT_SETTLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.callback = callback
        self.delay = delay
        self.settle = min(settle, delay)
        self.clock = clock
        self._due: dict[str, float] = {}
        self._fired: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def touch(self, key: str) -> None:
        with self._cond:
            now = self.clock()
            previous = self._fired.get(key)
            earliest = previous + self.delay if previous is not None else now
            self._due[key] = max(now + self.settle, earliest)
            self._cond.notify()

    def poll(self, now: float | None = None) -> float | None:
        moment = self.clock() if now is None else now
        with self._cond:
            ready = sorted(key for key, due in self._due.items() if due <= moment)
            for key in ready:
                del self._due[key]
                self._fired[key] = moment
            following = min(self._due.values()) - moment if self._due else None
        for key in ready:
            self.callback(key)
        return following

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watch-debounce", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        while True:
            following = self.poll()
            with self._cond:
                if self._stopped:
                    return
                self._cond.wait(following)


class _Handler(watchdog_events.FileSystemEventHandler):
    def __init__(self, folder: Path, debouncer: Debouncer) -> None:
        self.folder = folder
        self.debouncer = debouncer

    def on_any_event(self, event: watchdog_events.FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for raw in paths:
            if not raw:
                continue
            path = Path(raw.decode() if isinstance(raw, bytes) else raw)
            if path.parent == self.folder and sources.is_manifest_name(path.name):
                self.debouncer.touch(str(path))


class FolderWatcher:
    """Watches ``folder`` and calls ``callback(path)`` (debounced) for each manifest that changed."""

    def __init__(self, folder: Path, callback: Callable[[str], None], *, debounce: float = DEFAULT_DEBOUNCE) -> None:
        self.folder = folder.resolve()
        self.debouncer = Debouncer(callback, delay=debounce)
        self._observer = observers.Observer()
        self._observer.schedule(_Handler(self.folder, self.debouncer), str(self.folder), recursive=False)

    def start(self) -> None:
        self.debouncer.start()
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5.0)
        self.debouncer.stop()
