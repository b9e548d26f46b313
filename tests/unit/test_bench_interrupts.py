"""bench/interrupts.py: a bench stopped with SIGTERM runs its teardown, all of it, as after Ctrl-C.

The bench stands in as a child Python process that installs the handler, makes "something"
(a marker file), and removes it in ``finally``; the test talks to it through its pipes (no sleeps).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import interrupts
interrupts.exit_on_termination()
marker = open(sys.argv[2], "w")
marker.write("made\\n"); marker.flush()
try:
    print("ready", flush=True)
    time.sleep(600)
finally:
    print("tearing down", flush=True)
    sys.stdin.readline()  # the test sends a second SIGTERM here, then lets the teardown go on
    marker.write("removed\\n"); marker.close()
"""


def test_sigterm_runs_the_whole_teardown_and_a_second_one_does_not_cut_it_short(tmp_path: Path) -> None:
    marker = tmp_path / "made.txt"
    with subprocess.Popen([sys.executable, "-c", CHILD, str(BENCH), str(marker)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:  # fmt: skip
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"
            child.send_signal(signal.SIGTERM)
            assert child.stdout.readline() == "tearing down\n"
            child.send_signal(signal.SIGTERM)  # ignored from now on
            child.stdin.write("go on\n")
            child.stdin.flush()
            assert child.wait(timeout=60) == 128 + signal.SIGTERM
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert marker.read_text().splitlines() == ["made", "removed"]
