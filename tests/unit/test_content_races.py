"""Committing a blob is safe against concurrent writers of the same digest (issue 10, finding 15).

A commit links the very file whose bytes were hashed into ``blobs/`` (through its descriptor),
never whatever sits at the partial's path by then; and an ingest that waited for the lock of a
partial that meanwhile became a blob does not write into the stored blob.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from reconciler.backends.native import content
from tests.support.polling import eventually

DATA = b"layer bytes " * 4096
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_a_commit_links_the_file_it_hashed_not_what_is_at_the_path_now(tmp_path: Path) -> None:
    store = content.Store(tmp_path / "content")
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(DATA)
        # Meanwhile a rollback unlinks the partial and another download starts a new one there.
        store.partial_path(DIGEST).unlink()
        store.partial_path(DIGEST).write_bytes(b"garbage from someone else")
        ingest.commit()

    assert store.read(DIGEST) == DATA  # read() re-verifies the digest
    assert store.partial_path(DIGEST).read_bytes() == b"garbage from someone else"  # not ours to remove


def _waiting_for_lock(path: Path) -> bool:
    """Someone waits for an flock on ``path`` (``/proc/locks`` lists waiters with ``->``)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks", encoding="ascii") as locks:
        return any("->" in line and f":{inode} " in line for line in locks)


def test_a_writer_that_waited_for_the_lock_leaves_the_committed_blob_alone(tmp_path: Path) -> None:
    store = content.Store(tmp_path / "content")
    outcome: list[object] = []

    def second_writer() -> None:
        try:
            outcome.append(store.write(DIGEST, DATA))
        except BaseException as exc:  # handed to the test to assert on
            outcome.append(exc)

    with store.ingest(DIGEST, len(DATA)) as first:
        first.write(DATA[: len(DATA) // 2])
        writer = threading.Thread(target=second_writer, daemon=True)
        writer.start()
        eventually(lambda: _waiting_for_lock(store.partial_path(DIGEST)), what="the second writer to wait")
        first.write(DATA[len(DATA) // 2 :])
        first.commit()
    writer.join(timeout=20)

    assert outcome == [False], outcome  # it saw the committed blob and wrote nothing
    assert store.read(DIGEST) == DATA
    assert store.partials() == []
