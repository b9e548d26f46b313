"""Unmodified Debian server software on each engine, from the same manifests (``tests/e2e/stack``).

postgres, redis and nginx as Debian packages them (one image, built from Debian's packages by
``tests.support.debian_images``), on a network of their own, with a client container, driven by
the installed ``reconcile`` command: pgbench and redis-benchmark reach their servers by name, the
database password comes from a secret (and is the one postgres checks), nginx answers on a
published loopback port, postgres sees its ``ulimits`` and ``shmSize``, an outside name resolves
through the fake upstream resolver, and a row written before a recreate of postgres is there
after it (postgres having shut down cleanly).

Checks of features another part of the work delivers (secrets, ulimits and shmSize, outside
names) are collected and fail the test together at the end with what is missing, so one missing
feature does not hide the state of the others.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.e2e import fake_upstream
from tests.e2e.conftest import Stack, render, timed, upstream_in
from tests.support.cli import fetch
from tests.support.polling import eventually

PSQL = 'PGPASSWORD="$(cat /run/secrets/db-password)" psql -h postgres -U postgres -v ON_ERROR_STOP=1 -tAq'


def ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def status_row(stack: Stack, name: str) -> dict[str, object]:
    rows = json.loads(ok(stack.reconcile("status", "-o", "json"), "status -o json"))["objects"]
    return dict(next(row for row in rows if row["name"] == f"{stack.prefix}{name}"))


def wait_for_servers(stack: Stack) -> None:
    """postgres and redis answer the client by name (health is the daemon's or dockerd's business;
    without either, a started container may still be initialising)."""
    for server, probe in (("postgres", "pg_isready -q -h postgres -U postgres"), ("redis", "redis-cli -h redis ping")):

        def answers(probe: str = probe) -> bool:
            return stack.exec("client", probe).returncode == 0

        eventually(answers, timeout=120, interval=0.5, what=f"{server} to answer the client")


def check_benchmarks(stack: Stack) -> None:
    """pgbench (password from the secret) and redis-benchmark, both reaching their server by name."""
    password = 'PGPASSWORD="$(cat /run/secrets/db-password)"'
    pgbench = f"{password} pgbench -h postgres -U postgres"
    ran = ok(stack.exec("client", f"{pgbench} -q -i postgres && {pgbench} -t 50 -n postgres"), "pgbench -i, -t 50")
    assert "number of transactions actually processed: 50/50" in ran, ran
    refused = stack.exec("client", "PGPASSWORD=wrong psql -h postgres -U postgres -c 'select 1'")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr, refused
    # The usual commands only: the list and multi-key tests would double the time and test nothing more here.
    redis = ok(stack.exec("client", "redis-benchmark -h redis -n 1000 -q -t ping,set,get,incr,lpush,lpop"),
               "redis-benchmark")  # fmt: skip
    assert re.search(r"^SET: .* requests per second", redis, re.MULTILINE), redis
    assert re.search(r"^GET: .* requests per second", redis, re.MULTILINE), redis


def check_nginx(stack: Stack) -> None:
    ports = status_row(stack, "nginx")["ports"]
    match = (
        re.fullmatch(r"127\.0\.0\.1:(\d+)->80/tcp", ports[0]) if isinstance(ports, list) and len(ports) == 1 else None
    )
    assert match, ports
    page = eventually(lambda: fetch(f"http://127.0.0.1:{match[1]}/"), what="nginx on its published port")
    assert b"Welcome to nginx!" in page


def check_knobs(stack: Stack, problems: list[str]) -> None:
    """``ulimits`` and ``shmSize`` as postgres sees them."""
    limits = stack.exec("postgres", "ulimit -Sn; ulimit -Hn; df -k /dev/shm")
    lines = limits.stdout.split()
    if limits.returncode != 0 or lines[:2] != ["4321", "8642"]:
        problems.append(f"ulimits: nofile 4321/8642 expected inside postgres, got: {limits.stdout}{limits.stderr}")
    if not re.search(r"\s262144\s+\d+\s+\d+\s+\d+%\s+/dev/shm", limits.stdout):
        problems.append(f"shmSize: a 256Mi /dev/shm expected inside postgres, df says: {limits.stdout}")


def check_outside_name(stack: Stack, address: str, problems: list[str]) -> None:
    """``getent hosts`` of an outside name in the client, answered by the fake upstream."""
    netns = ok(stack.exec("client", "readlink /proc/self/ns/net"), "readlink of the client's netns").strip()
    with upstream_in(netns, address):
        found = stack.exec("client", f"getent hosts {fake_upstream.NAME}")
    if found.returncode != 0 or fake_upstream.ADDRESS not in found.stdout.split():
        problems.append(f"outside names: {fake_upstream.NAME} should resolve through the fake upstream on {address} "
                        f"(spec dns / --dns-upstream) to {fake_upstream.ADDRESS}; getent said "
                        f"({found.returncode}): {found.stdout}{found.stderr}")  # fmt: skip


def check_secret_kept_out(stack: Stack, password: str, outputs: list[str], problems: list[str]) -> None:
    seen = ok(stack.reconcile("status", "-o", "json"), "status") + "".join(outputs)
    if password in seen:
        problems.append("secrets: the password appears in apply's output or in status")


def recreate_keeps_data(stack: Stack, folder: Path, address: str, password: str) -> list[str]:
    """A row written, postgres recreated by an env change, the row read back; the apply's output."""
    ok(stack.exec("client", f"{PSQL} -c \"CREATE TABLE kept (v text); INSERT INTO kept VALUES ('{stack.prefix}')\""),
       "writing a row")  # fmt: skip
    before = status_row(stack, "postgres")
    render(folder, prefix=stack.prefix, dns=address, generation=2, password=password)
    with timed(f"{stack.engine}: recreate postgres"):
        applied = ok(stack.reconcile("apply", "-f", str(folder), "--wait", "--timeout", "180"), "the second apply")
        wait_for_servers(stack)
    assert "1 to recreate" in applied, applied
    assert before["id"] is not None and status_row(stack, "postgres")["id"] != before["id"], "a new container"
    read = eventually(lambda: ok(stack.exec("client", f"{PSQL} -c 'SELECT v FROM kept'"), "reading the row"),
                      timeout=60, what="the row after the recreate")  # fmt: skip
    assert read.split() == [stack.prefix], read
    logs = stack.reconcile("logs", f"{stack.prefix}postgres")
    assert "database system was shut down at" in logs.stdout + logs.stderr, "postgres shut down cleanly before"
    return [applied]


@pytest.mark.integration
def test_debian_stack(stack: Stack, host_upstream: tuple[str, fake_upstream.Resolver],
                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    address, _ = host_upstream
    monkeypatch.setenv("RECONCILER_DNS_UPSTREAM", address)  # the native engine's setting; spec dns wins
    password = secrets.token_hex(16)
    folder = render(stack.workdir / "stack", prefix=stack.prefix, dns=address, generation=1, password=password)
    with timed(f"{stack.engine}: first apply (--wait)"):
        first = ok(stack.reconcile("apply", "-f", str(folder), "--wait", "--timeout", "180"), "the first apply")
    problems: list[str] = []
    with timed(f"{stack.engine}: checks"):
        wait_for_servers(stack)
        check_benchmarks(stack)
        check_nginx(stack)
        check_knobs(stack, problems)
        check_outside_name(stack, address, problems)
    outputs = [first, *recreate_keeps_data(stack, folder, address, password)]
    check_secret_kept_out(stack, password, outputs, problems)
    assert not problems, "\n".join(problems)
