"""Issue 12's last gaps: names as compose writes them (``<project>_<name>``), env files
interpolated, ``include`` with ``project_directory``/``env_file``, a replicated service named by
``network_mode: service:x``/``volumes_from``, and anonymous volumes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors, manifests, operations, planning
from reconciler.compose import loader
from tests.unit.compose_helpers import convert, errors_of, spec, write
from tests.unit.helpers import IMAGE, new_engine


def test_a_replica_named_by_volumes_from_or_network_mode_is_declared() -> None:
    """The manifests' own advice ("name one, e.g. web-1") must be accepted."""
    text = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web}
spec: {image: busybox, replicas: 2}
---
apiVersion: reconciler/v1
kind: Container
metadata: {name: side}
spec: {image: busybox, networkMode: "container:web-1", volumesFrom: [web-2], ipc: "container:web-1"}
"""
    desired = manifests.load_sources([("m.yaml", text)])
    side = desired.containers["side"]
    assert side.spec.network_mode == "container:web-1"
    assert side.spec.volumes_from == ["web-2"]
    assert sorted(desired.containers) == ["side", "web-1", "web-2"]


def test_service_modes_and_volumes_from_name_the_first_replica(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p",
        "compose.yaml",
        """
        services:
          web: {image: busybox, deploy: {replicas: 3}}
          side: {image: busybox, network_mode: "service:web", volumes_from: [web], ipc: "service:web"}
        """,
    )
    side = spec(convert(path), "p-side-1")
    assert side["networkMode"] == "container:p-web-1"
    assert side["ipc"] == "container:p-web-1"
    assert side["volumesFrom"] == ["p-web-1"]


NAMED = """\
apiVersion: reconciler/v1
kind: Network
metadata: {name: shop_back.net}
---
apiVersion: reconciler/v1
kind: Volume
metadata: {name: shop_Data}
---
apiVersion: reconciler/v1
kind: Container
metadata: {name: NAME}
spec:
  image: busybox
  networks: [{name: shop_back.net}]
  mounts: [{type: volume, source: shop_Data, target: /data}]
"""


def test_networks_and_volumes_take_compose_names_containers_stay_dns_labels() -> None:
    desired = manifests.load_sources([("m.yaml", NAMED.replace("NAME", "web"))])
    assert set(desired.networks) == {"shop_back.net"} and set(desired.volumes) == {"shop_Data"}
    assert desired.containers["web"].spec.networks[0].name == "shop_back.net"
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_sources([("m.yaml", NAMED.replace("NAME", "shop_web"))])
    (problem,) = caught.value.diagnostics
    assert (problem.line, problem.field) == (11, "metadata.name") and "not a DNS label" in problem.render()


@pytest.mark.parametrize("name", ["_x", "-x", ".x", "a/b", "a b", "x" * 129, "..", "a:b"])
def test_a_bad_network_or_volume_name_is_refused_at_its_place(name: str) -> None:
    text = f"apiVersion: reconciler/v1\nkind: Volume\nmetadata:\n  name: {name!r}\n"
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_sources([("m.yaml", text)])
    (problem,) = caught.value.diagnostics
    assert (problem.line, problem.field) == (4, "metadata.name")


def test_compose_names_networks_and_volumes_project_underscore_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "My_App",
        "compose.yaml",
        """
        services:
          Web_1:
            image: busybox
            networks: [Front.End, default]
            volumes: ["Data.X:/d", "plain:/p"]
        networks:
          Front.End: {}
          named: {name: given_name}
        volumes:
          Data.X: {}
          plain: {name: as_given}
        """,
    )
    documents = convert(path)
    assert {(d["kind"], name) for name, d in documents.items()} == {
        ("Network", "my_app_Front.End"), ("Network", "my_app_default"), ("Volume", "my_app_Data.X"),
        ("Volume", "as_given"), ("Container", "my-app-web-1-1"),
    }  # fmt: skip
    web = spec(documents, "my-app-web-1-1")
    assert sorted(n["name"] for n in web["networks"]) == ["my_app_Front.End", "my_app_default"]
    assert [m["source"] for m in web["mounts"]] == ["my_app_Data.X", "as_given"]
    assert {d["metadata"]["stack"] for d in documents.values()} == {"my-app"}


def test_env_files_are_interpolated_as_compose_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_PROCESS", "process")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    folder = tmp_path / "p"
    write(folder, ".env", "TAG=dot\nFOO=dot-foo\n")
    write(folder, "one.env", "A=${TAG}\nFOO=one\nB=${FOO}-b\nC='${TAG}'\nPLAIN=text\nQUOTED=\"x y\"\n")
    write(folder, "two.env", "D=${A}/${FOO}\nPLAIN=again\n")
    write(folder, "bare.env", "FROM_PROCESS\nNOT_SET_ANYWHERE\nE=1\n")
    path = write(
        folder,
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            environment: {B: own}
            env_file: [one.env, two.env, bare.env]
        """,
    )
    web = spec(convert(path), "p-web-1")
    # Files manifests read as they are stay files (their edits are watched); bare.env has a KEY alone.
    assert web["envFiles"] == [str(folder / "one.env"), str(folder / "two.env")]
    # Only what compose's reading changes is written out; environment: wins whatever the order.
    assert web["env"] == {"A": "dot", "D": "dot/dot-foo", "FROM_PROCESS": "process", "E": "1", "B": "own"}
    container = loader.load_sources([(str(path), path.read_text())]).containers["p-web-1"]
    assert container.effective_env == {
        "A": "dot", "FOO": "one", "B": "own", "C": "${TAG}", "PLAIN": "again", "QUOTED": "x y",
        "D": "dot/dot-foo", "FROM_PROCESS": "process", "E": "1",
    }  # fmt: skip


def test_a_bad_env_file_is_refused_at_its_place_without_its_text(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write(folder, "bad.env", "OK=1\nSECRET=hunter2${oops\n")
    write(folder, "need.env", "X=${REQUIRED:?set REQUIRED}\n")
    path = write(
        folder,
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            env_file: [bad.env, need.env, missing.env]
        """,
    )
    problems = errors_of(path)
    assert len(problems) == 3, problems
    assert all(":4:" in problem and "services.web.env_file[" in problem for problem in problems), problems
    assert "bad.env:2:" in problems[0] and "hunter2" not in "".join(problems)
    assert "need.env:1: required variable REQUIRED is missing a value: set REQUIRED" in problems[1]
    assert "cannot read" in problems[2] and "missing.env" in problems[2]


def test_include_with_project_directory_and_env_file(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write(folder, ".env", "TAG=1\n")
    write(folder, "lib/compose.yaml", "services:\n  b:\n    image: busybox:${TAG}\n    volumes: ['./d:/d']\n"
          "    env_file: [b.env]\n    environment: {V: '${V}'}\n")  # fmt: skip
    write(folder, "lib/vars.env", "TAG=2\nV=from-vars-${TAG}\n")
    write(folder, "lib/pd/b.env", "BV=${V}\n")
    path = write(
        folder,
        "compose.yaml",
        """
        include:
          - {path: lib/compose.yaml, project_directory: lib/pd, env_file: lib/vars.env}
        services:
          a: {image: "busybox:${TAG}"}
        """,
    )
    documents = convert(path)
    b = spec(documents, "p-b-1")
    assert b["image"] == "busybox:1"  # the including project's variables win
    assert b["mounts"][0]["source"] == str(folder / "lib" / "pd" / "d")
    assert b["envFiles"] == [str(folder / "lib" / "pd" / "b.env")]
    assert b["env"] == {"BV": "from-vars-1", "V": "from-vars-1"}


def test_a_bad_include_entry_is_refused_at_its_place(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write(folder, "lib/compose.yaml", "services:\n  b: {image: busybox}\n")
    path = write(
        folder,
        "compose.yaml",
        """
        include:
          - {path: lib/compose.yaml, env_file: missing.env}
          - {path: lib/compose.yaml, env_file: [1]}
          - {path: lib/compose.yaml, project_directory: lib, bogus: 1}
        services:
          a: {image: busybox}
        """,
    )
    problems = errors_of(path)
    assert len(problems) == 3, problems
    assert ":2:" in problems[0] and "missing.env" in problems[0]
    assert ":3:" in problems[1] and "env_file: a path or a list of paths" in problems[1]
    assert ":4:" in problems[2] and "project_directory, env_file" in problems[2]


ANONYMOUS = """
services:
  web:
    image: IMAGE
    environment: {A: "VALUE"}
    volumes: ["/data", {type: volume, target: /cache, read_only: true}]
"""


def test_anonymous_volumes_are_volumes_of_the_stack_kept_until_asked(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    path = write(folder, "compose.yaml", ANONYMOUS.replace("IMAGE", IMAGE).replace("VALUE", "1"))
    documents = convert(path)
    data, cache = (f"p_web-{hashlib.sha256(t.encode()).hexdigest()[:12]}" for t in ("/data", "/cache"))
    assert [(d["kind"], name) for name, d in documents.items()] == [
        ("Network", "p_default"), ("Volume", data), ("Volume", cache), ("Container", "p-web-1"),
    ]  # fmt: skip
    assert spec(documents, "p-web-1")["mounts"] == [
        {"type": "volume", "source": data, "target": "/data"},
        {"type": "volume", "source": cache, "target": "/cache", "readOnly": True},
    ]
    engine = new_engine()

    def apply(value: str) -> operations.Applied:
        path.write_text(ANONYMOUS.replace("IMAGE", IMAGE).replace("VALUE", value))
        desired = loader.load_sources([(str(path), path.read_text())])
        return operations.apply_desired(engine, desired, planning.Options(), parallelism=2)

    assert apply("1").outcome.ok
    assert set(engine.observe().volumes) == {data, cache}
    recreated = apply("2")  # the same name at every load: the container is recreated, its volumes kept
    assert [(c.kind, c.name, c.change) for c in recreated.plan.changes] == [("Container", "p-web-1", "recreate")]
    kept = operations.delete_stacks(engine, ["p"], prune_volumes=False, parallelism=2)
    assert kept.outcome.ok and set(engine.observe().volumes) == {data, cache}
    pruned = operations.delete_stacks(engine, ["p"], prune_volumes=True, parallelism=2)
    assert pruned.outcome.ok and not engine.observe().volumes


def test_an_anonymous_volume_of_a_replicated_service_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "p", "compose.yaml", "services:\n  web: {image: busybox, scale: 2, volumes: [/data]}\n")
    (problem,) = errors_of(path)
    assert ":2:45: services.web.volumes[0]: an anonymous volume of a replicated service" in problem


# The new surfaces fuzzed: an env file's text, include entries and anonymous volume forms give a
# ManifestError at a place inside the compose file, never a traceback.
_include_values = st.one_of(
    st.none(), st.integers(), st.text(max_size=12), st.lists(st.text(max_size=8), max_size=3),
    st.sampled_from(["lib/compose.yaml", "lib", "vars.env", ["vars.env", "missing.env"], "..", "/"]),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    env_text=st.text(alphabet=st.sampled_from("AB_=$ {}:?-+'\"#\\\nx1"), max_size=60),
    entry=st.dictionaries(st.sampled_from(["path", "project_directory", "env_file", "x"]), _include_values, max_size=3),
    volume=st.one_of(st.sampled_from(["/data", "data", "/", "", ":/x", "/a:/b:ro"]),
                     st.dictionaries(st.sampled_from(["type", "target", "source", "read_only"]),
                                     st.sampled_from(["volume", "/t", None, 1, "", "x"]), max_size=4)),
)  # fmt: skip
def test_env_files_includes_and_anonymous_volumes_never_crash(
    env_text: str, entry: dict[str, object], volume: object, tmp_path: Path
) -> None:
    folder = tmp_path / "fuzz"
    write(folder, "vars.env", env_text)
    write(folder, "lib/compose.yaml", "services:\n  b: {image: busybox, env_file: [../vars.env]}\n")
    text = yaml.safe_dump({"include": [entry], "services": {"a": {"image": "busybox", "env_file": ["vars.env"],
                                                                  "volumes": [volume]}}})  # fmt: skip
    file = str(folder / "compose.yaml")
    try:
        loader.convert([(file, text)])
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            assert diagnostic.line >= 1 and diagnostic.column >= 1
            # The file in error: the root, an included compose file, or vars.env when an include names it.
            assert diagnostic.file in (file, str(folder / "lib" / "compose.yaml"), str(folder / "vars.env"))
