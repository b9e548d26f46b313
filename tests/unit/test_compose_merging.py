"""Several -f files with compose's override rules, extends and include; positions follow the values."""

from __future__ import annotations

from pathlib import Path

from tests.unit.compose_helpers import convert, errors_of, spec, write


def test_override_rules(tmp_path: Path) -> None:
    base = write(
        tmp_path / "m",
        "compose.yaml",
        """
        services:
          web:
            image: busybox:1
            command: [sleep, "1"]
            environment: {A: "1", B: "1"}
            ports: ["8080:80"]
            volumes: ["./a:/data", "./b:/keep"]
            dns: [1.1.1.1]
        """,
    )
    override = write(
        tmp_path / "m",
        "compose.override.yaml",
        """
        services:
          web:
            image: busybox:2
            command: [sleep, "2"]
            environment: [B=2, C=3]
            ports: ["8080:80", "9090:90"]
            volumes: ["./c:/data"]
            dns: 8.8.8.8
        """,
    )
    web = spec(convert(base, override), "m-web-1")
    assert web["image"] == "busybox:2"  # a scalar replaces
    assert web["command"] == ["sleep", "2"]  # command is replaced whole
    assert web["env"] == {"A": "1", "B": "2", "C": "3"}  # mappings merge (the list form too)
    assert web["ports"] == [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 90, "hostPort": 9090}]
    assert [(m["source"], m["target"]) for m in web["mounts"]] == [
        (str(tmp_path / "m" / "c"), "/data"),  # volumes merge by target
        (str(tmp_path / "m" / "b"), "/keep"),
    ]
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]  # other lists are appended


def test_an_error_in_the_override_points_into_the_override(tmp_path: Path) -> None:
    base = write(tmp_path / "m", "compose.yaml", "services:\n  web:\n    image: busybox\n    ports: ['80']\n")
    override = write(tmp_path / "m", "override.yaml", "services:\n  web:\n    ports: ['http:80']\n    user: 1\n")
    assert errors_of(base, override) == [
        f"{override}:3:13: services.web.ports[1]: 'http:80' is not a port: write e.g. \"8080:80\", "
        '"127.0.0.1:8080:80/udp", "8000-8002:80-82" or the long form {containerPort: 80, hostPort: 8080}',
        f"{override}:4:11: services.web.user: expected a string, found a number",
    ]


def test_extends_in_the_file_and_from_another(tmp_path: Path) -> None:
    folder = tmp_path / "e"
    write(
        folder,
        "lib/common.yaml",
        """
        services:
          app:
            image: busybox
            working_dir: /srv
            volumes: ["./data:/data"]
        """,
    )
    compose = write(
        folder,
        "compose.yaml",
        """
        services:
          base:
            image: busybox
            environment: {A: "1"}
          web:
            extends: base
            environment: {B: "2"}
          other:
            extends: {file: lib/common.yaml, service: app}
            user: nobody
        """,
    )
    documents = convert(compose)
    assert spec(documents, "e-web-1")["env"] == {"A": "1", "B": "2"}
    other = spec(documents, "e-other-1")
    assert other["workingDir"] == "/srv" and other["user"] == "nobody"
    assert other["mounts"] == [{"type": "bind", "source": str(folder / "lib" / "data"), "target": "/data"}]


def test_extends_cycles_and_unknown_bases_are_errors(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "c",
        "compose.yaml",
        """
        services:
          a: {image: busybox, extends: b}
          b: {image: busybox, extends: a}
          c: {image: busybox, extends: nothing}
        """,
    )
    found = errors_of(compose)
    assert any(":2:" in line and "extends is a cycle" in line for line in found) or any(
        ":3:" in line and "extends is a cycle" in line for line in found
    )
    assert any(line.startswith(f"{compose}:4:") and "'nothing', which is not a service" in line for line in found)


def test_include(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    write(folder, "db/compose.yaml", "services:\n  db:\n    image: busybox\n    volumes: [./data:/data]\n")
    compose = write(
        folder, "compose.yaml", "include: [db/compose.yaml]\nservices:\n  web: {image: busybox, depends_on: [db]}\n"
    )
    documents = convert(compose)
    assert spec(documents, "i-db-1")["mounts"][0]["source"] == str(folder / "db" / "data")
    assert spec(documents, "i-web-1")["dependsOn"] == [{"name": "i-db-1"}]


def test_include_of_a_service_defined_twice_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    write(folder, "other.yaml", "services:\n  web: {image: busybox}\n")
    compose = write(folder, "compose.yaml", "include: [other.yaml]\nservices:\n  web: {image: busybox}\n")
    assert errors_of(compose) == [
        f"{compose}:1:11: include[0]: service web is defined both here and in the included file"
    ]


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    write(folder, "a.yaml", "include: [compose.yaml]\nservices: {}\n")
    compose = write(folder, "compose.yaml", "include: [a.yaml]\nservices:\n  web: {image: busybox}\n")
    assert any("in a cycle" in line for line in errors_of(compose))
