"""The ``reconcile`` process (reconciler.launcher): the command's exit code, with the collector on."""

from __future__ import annotations

import subprocess
import sys

# The command replaced by one that reports what the launcher promises it: the collector is on
# while the command runs (a long apply or the daemon collect as usual) and its code is the exit code.
_PROBE = """
import gc, sys
from reconciler.cli import entry
def command():
    print("collector on" if gc.isenabled() else "collector off")
    return 3
entry.main = command
from reconciler import launcher
launcher.main()
"""


def test_the_command_runs_with_the_collector_on_and_its_code_is_the_exit_code() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (3, "collector on", "")


def test_the_version_through_the_launcher() -> None:
    argv = [sys.executable, "-c", "import sys; sys.argv = ['reconcile', '--version']; "
            "from reconciler import launcher; launcher.main()"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reconcile ")
