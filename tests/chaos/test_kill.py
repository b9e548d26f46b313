"""kill -9 of ``reconcile apply`` and of ``reconcile watch`` at random points of a 16-container apply.

One root serves every trial (busybox loaded locally, no registry). A trial either applies the
stack afresh (after a clean ``delete``) or changes the spec of half of it (the ``TRIAL``
variable of the even or the odd containers), so that 8 containers are recreated; a kill point,
drawn from the seeded random source, is then awaited by polling the root while the command runs,
and the command gets SIGKILL there:

- ``records K``: K new containers have their record (``container.json``);
- ``keepers K``: K keepers (conmon) of new containers run;
- ``removed K``: K containers of the old spec are gone (mid-recreate);
- ``half``: a container directory without its record exists (a create in flight).

After each kill, re-applying (or restarting the daemon) must converge: ``status`` shows the 16
containers running with the manifest's spec hashes, and nothing of a container that no longer exists
(state directory, mount, netns, veth, rule, cgroup, process) may remain. At the end, after
``delete --stack``, nothing of the root is left on the host and the image store verifies.

Sixteen killed applies and four killed daemons: 20 kills (a drawn point that comes after the
apply ended does not count, and another trial is run). Every defect of every trial is collected
and asserted at the end, with the seed; ``commands.log`` in the test's temporary directory has
the commands' output and the time of each phase. A kill during an image pull is in
``test_registry_faults.py`` (it needs the registry).
"""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.chaos import leftovers
from tests.chaos.conftest import REPO, chaos_seed, cli, load_busybox, run
from tests.chaos.stacks import (
    CONTAINERS,
    converged,
    half_created,
    kill_at,
    records,
    supervised,
    trial_value,
    write_stack,
)
from tests.support.polling import eventually

APPLY_KILLS = 16
WATCH_TRIALS = 4
# The restarted daemon converges within seconds; this bounds the wait when it does not.
WATCH_SETTLE = 45.0


@dataclasses.dataclass(frozen=True)
class KillPoint:
    kind: str
    count: int

    def reached(self, root: Path, old: set[str]) -> bool:
        """``old``: the ids recorded before the command started."""
        now = set(records(root))
        new = now - old
        if self.kind == "records":
            return len(new) >= self.count
        if self.kind == "keepers":
            return len(new & supervised(root)) >= self.count
        if self.kind == "removed":
            return len(old - now) >= self.count
        return len(new) >= self.count and half_created(root)


def draw(rng: random.Random, recreate: bool) -> KillPoint:
    kinds = ["records", "keepers", "half"] + (["removed"] if recreate else [])
    kind = rng.choice(kinds)
    # A recreate replaces half of the stack; never the last container: the command must still be
    # running when the point is reached; at least one container along (but the first "half" may
    # be the very first create).
    changing = CONTAINERS // 2 if recreate else CONTAINERS
    return KillPoint(kind, rng.randint(0 if kind == "half" else 1, changing - 2))


def failed_steps(output: str) -> str:
    return "; ".join(line.strip() for line in output.splitlines() if line.strip().startswith("✗")) or output[-500:]


@dataclasses.dataclass
class Trials:
    root: Path
    prefix: str
    manifest: Path
    traces: leftovers.Traces
    log: Path
    trial: int = 0
    kills: int = 0
    # What went wrong, trial by trial; asserted at the end so that one run reports every defect.
    problems: list[str] = dataclasses.field(default_factory=list)
    leaks: list[str] = dataclasses.field(default_factory=list)
    reported: set[str] = dataclasses.field(default_factory=set)
    clock: float = dataclasses.field(default_factory=time.monotonic)

    def check(self, what: str) -> None:
        """Converged, and nothing of a container that no longer exists is left (kept for the end)."""
        ids = converged(self.root, self.manifest, self.prefix, self.trial)
        found = self.traces.settled(keep=ids)
        new = {kind: [i for i in items if i not in self.reported] for kind, items in found.items()}
        new = {kind: items for kind, items in new.items() if items}
        if new:
            self.reported |= {item for items in new.values() for item in items}
            self.leaks.append(f"trial {self.trial} ({what}): {leftovers.describe(new)}")

    def recover(self, what: str, failure: str) -> None:
        """Note a failed convergence, then start over (delete the stack, apply) so later trials run."""
        self.problems.append(f"trial {self.trial} ({what}): {failure}")
        run(cli(self.root, "delete", "--stack", f"{self.prefix}s"), check=False)
        run(cli(self.root, "apply", "-f", str(self.manifest)))

    def phase(self, name: str) -> None:
        """Note the time since the previous phase (in the commands' log: where a slow run spends it)."""
        now = time.monotonic()
        with self.log.open("a") as out:
            out.write(f"== trial {self.trial}: {name} took {now - self.clock:.2f}s\n")
        self.clock = now

    def apply_trial(self, rng: random.Random) -> None:
        self.trial += 1
        recreate = rng.random() < 0.75
        if not recreate:
            run(cli(self.root, "delete", "--stack", f"{self.prefix}s"))
            self.phase("delete")
        old = set(records(self.root))
        write_stack(self.manifest, self.prefix, self.trial)
        point = draw(rng, recreate)
        what = f"apply {'recreate' if recreate else 'fresh'}, kill -9 at {point.kind} {point.count}"
        argv = cli(self.root, "apply", "-f", str(self.manifest))
        if kill_at(argv, lambda: point.reached(self.root, old), self.traces, self.log):
            self.kills += 1
        self.phase(f"apply until {what}")
        again = run(argv, check=False)
        self.phase("re-apply")
        if again.returncode != 0:
            self.recover(what, f"the re-apply exited {again.returncode}: {failed_steps(again.stdout)}")
        self.check(what)
        self.phase("check")

    def watch_trial(self, rng: random.Random, folder: Path, socket: Path) -> None:
        self.trial += 1
        old = set(records(self.root))
        write_stack(folder / "stack.yaml", self.prefix, self.trial)
        write_stack(self.manifest, self.prefix, self.trial)
        point = draw(rng, True)
        what = f"watch, kill -9 at {point.kind} {point.count}"
        argv = cli(self.root, "watch", str(folder), "--debounce", "0.1", socket=str(socket))
        if kill_at(argv, lambda: point.reached(self.root, old), self.traces, self.log):
            self.kills += 1
        self.phase(f"watch until {what}")
        with self.log.open("ab") as out, subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=out,
                                                          start_new_session=True) as daemon:  # fmt: skip
            try:
                eventually(lambda: self._settled(daemon), timeout=WATCH_SETTLE, interval=0.3,
                           what=f"the restarted daemon to converge trial {self.trial}")  # fmt: skip
                failure = ""
            except AssertionError as exc:
                failure = str(exc)[:1500]
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
        self.phase("restarted watch until converged")
        if failure:
            self.recover(what, failure)
        self.check(what)
        self.phase("check")

    def _settled(self, daemon: subprocess.Popen[bytes]) -> bool:
        """Cheap probes first (files, /proc); ``status`` only once they agree."""
        assert daemon.poll() is None, f"the restarted daemon exited {daemon.returncode}: {self.log.read_text()[-2000:]}"
        now = records(self.root)
        wanted = sorted(trial_value(i, self.trial) for i in range(CONTAINERS))
        if sorted(now.values()) != wanted or not set(now) <= supervised(self.root):
            return False
        converged(self.root, self.manifest, self.prefix, self.trial)
        return True


@pytest.mark.integration
def test_kill_9_of_apply_and_watch_at_random_points_converges_and_leaks_nothing(
    root: Path, traces: leftovers.Traces, prefix: str, rng: random.Random, tmp_path: Path, short_dir: Path
) -> None:
    load_busybox(root, tmp_path)
    trials = Trials(root, prefix, tmp_path / "stack.yaml", traces, tmp_path / "commands.log")
    write_stack(trials.manifest, prefix, 0)
    run(cli(root, "apply", "-f", str(trials.manifest)))
    # Until enough kills hit a running apply (a drawn point may come after the apply ended).
    while trials.kills < APPLY_KILLS and trials.trial < APPLY_KILLS + 4:
        trials.apply_trial(rng)
    folder = tmp_path / "watched"
    folder.mkdir()
    for _ in range(WATCH_TRIALS):
        trials.watch_trial(rng, folder, short_dir / "api.sock")
    assert trials.kills >= 20, f"only {trials.kills} of {trials.trial} trials killed a running command"
    run(cli(root, "delete", "--stack", f"{prefix}s"))
    left = traces.settled()
    problems = leftovers.store_problems(root)
    defects = [
        *(f"kill -9 then re-apply did not converge: {p}" for p in trials.problems),
        *(f"after a converged re-apply, remains of a killed run: {leak}" for leak in trials.leaks),
        *([f"after delete --stack, left on the host: {leftovers.describe(left)}"] if left else []),
        *([f"the image store does not verify: {problems}"] if problems else []),
    ]
    assert not defects, f"{len(defects)} defects in {trials.trial} trials (chaos seed {chaos_seed()}):\n" + "\n".join(
        defects
    )
