"""Every compose field either maps or is refused at its file:line:col with its reason: never dropped.

Each case is one service body (or top-level section) and the reason expected at its line. The
errors of a file come all at once, in the order of the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.compose import translating
from tests.unit.compose_helpers import convert, errors_of, write

REFUSED_IN_A_SERVICE = [
    ("build: .", "this project does not build images; build it with docker build and name it in image:"),
    ("expose: ['80']", "`expose` is not supported: expose only documents a port"),
    ("links: [db]", "`links` is not supported"),
    ("external_links: [x]", "`external_links` is not supported"),
    ("platform: linux/arm64", "`platform` is not supported"),
    ("tty: true", "`tty` is not supported"),
    ("stdin_open: true", "`stdin_open` is not supported"),
    ("mac_address: 02:42:ac:11:65:43", "`mac_address` has no manifest field here"),
    ("runtime: runsc", "`runtime` has no manifest field here"),
    ("cgroup_parent: x", "`cgroup_parent` has no manifest field here"),
    ("userns_mode: host", "`userns_mode` has no manifest field here"),
    ("storage_opt: {size: 1G}", "`storage_opt` has no manifest field here"),
    ("isolation: default", "`isolation` has no manifest field here"),
    ("pull_policy: build", "pull_policy 'build'"),
    ("ports: [{target: 80, name: web}]", "ports: `name` has no manifest field here"),
    ("ports: [{target: 80, app_protocol: http}]", "ports: `app_protocol` has no manifest field here"),
    ("volumes: [/anonymous]\n    scale: 2", "an anonymous volume of a replicated service"),
    (
        "volumes: [{type: bind, source: ., target: /x, bind: {propagation: shared}}]",
        "volumes: `bind` has no manifest field",
    ),
    ("volumes: [{type: npipe, source: x, target: /x}]", "volume type 'npipe'"),
    ("volumes_from: [db:ro]", "volumes_from with :ro or :rw is not supported"),
    ("logging: {driver: syslog}", "logging: only the json-file log is kept"),
    ("logging: {options: {compress: 'true'}}", "logging option 'compress'"),
    ("healthcheck: {test: 'true', start_interval: 1s}", "healthcheck.start_interval has no manifest field here"),
    ("depends_on: {db: {condition: service_started, restart: true}}", "restart: true (restart with the dependency)"),
    ("depends_on: {db: {condition: service_started, required: false}}", "required: false is not supported"),
    ("depends_on: {db: {condition: service_ready}}", "condition: service_started, service_healthy or"),
    ("deploy: {placement: {preferences: [{spread: node.labels.zone}]}}", "deploy.placement.preferences has no"),
    ("deploy: {placement: {max_replicas_per_node: 1}}", "deploy.placement.max_replicas_per_node has no"),
    ("deploy: {update_config: {parallelism: 1}}", "deploy.update_config.parallelism: replicas are replaced together"),
    ("deploy: {update_config: {delay: 5s}}", "deploy.update_config.delay: replacements follow each other"),
    ("deploy: {update_config: {failure_action: pause}}", "deploy.update_config.failure_action: a replacement"),
    ("deploy: {update_config: {failure_action: continue}}", "deploy.update_config.failure_action: a replacement"),
    ("deploy: {update_config: {max_failure_ratio: 0.3}}", "deploy.update_config.max_failure_ratio: any replacement"),
    ("deploy: {update_config: {order: sideways}}", "deploy.update_config.order 'sideways': start-first or stop-first"),
    ("deploy: {update_config: {monitor: 10}}", "deploy.update_config.monitor is a duration written as text"),
    ("deploy: {update_config: {monitor: soon}}", "deploy.update_config.monitor: 'soon' is not a duration"),
    ("deploy: {update_config: null}", "deploy.update_config must be a mapping"),
    ("deploy: {placement: [node.role==worker]}", "deploy.placement must be a mapping"),
    ("deploy: {update_config: {progress: 1}}", "deploy.update_config.progress has no manifest field"),
    ("deploy: {rollback_config: {parallelism: 0}}", "deploy.rollback_config: a rollback here restores"),
    ("deploy: {endpoint_mode: dnsrr}", "deploy.endpoint_mode: replicas answer by DNS round robin"),
    ("deploy: {labels: {a: b}}", "deploy.labels: the service's labels are swarm's"),
    ("deploy: {mode: global}", "deploy.mode has no manifest field here"),
    ("ports: [{target: 80, mode: sideways}]", "ports[0].mode: must be one of 'ingress' or 'host', got 'sideways'"),
    ("deploy: {resources: {reservations: {cpus: '1'}}}", "deploy.resources.reservations.cpus has no manifest field"),
    ("deploy: {restart_policy: {condition: any, what: 1}}", "deploy.restart_policy.what has no manifest field"),
    ("networks: {undeclared: {}}", "network 'undeclared' is not declared"),
    ("networks: {back: {priority: 1}}", "networks.back.priority has no manifest field"),
    ("secrets: [nothing]", "secret 'nothing' is not declared"),
    ("tmpfs: ['/run:uid=1000']", "tmpfs option 'uid'"),
]


@pytest.mark.parametrize(("body", "reason"), REFUSED_IN_A_SERVICE, ids=[body for body, _ in REFUSED_IN_A_SERVICE])
def test_a_refused_service_field_is_an_error_at_its_place(body: str, reason: str, tmp_path: Path) -> None:
    image = "" if body.startswith("build") else "    image: busybox\n"
    text = f"services:\n  web:\n{image}    {body}\n  db:\n    image: busybox\nnetworks:\n  back: {{}}\n"
    compose = write(tmp_path / "r", "compose.yaml", text)
    found = errors_of(compose)
    line = 3 if body.startswith("build") else 4
    assert any(error.startswith(f"{compose}:{line}:") and reason in error for error in found), found


REFUSED_AT_THE_TOP = [
    ("networks: {n: {driver: overlay}}", "networks: `driver` has no manifest field here"),
    ("networks: {n: {enable_ipv6: true}}", "networks: `enable_ipv6` has no manifest field here"),
    ("networks: {n: {ipam: {config: [{subnet: 10.1.0.0/24}, {subnet: 10.2.0.0/24}]}}}", "ipam.config: one entry"),
    (
        "networks: {n: {ipam: {config: [{subnet: 10.1.0.0/24, ip_range: 10.1.0.0/25}]}}}",
        "ipam.config.ip_range has no manifest field",
    ),
    ("volumes: {v: {driver: nfs}}", "volumes: `driver` has no manifest field here"),
    ("secrets: {s: {external: true}}", "secrets: `external` is not supported"),
    ("configs: {c: {content: hello}}", "configs: `content` is not supported"),
    ("unknown_top: 1", "unknown top-level field `unknown_top`"),
]


@pytest.mark.parametrize(("section", "reason"), REFUSED_AT_THE_TOP, ids=[s for s, _ in REFUSED_AT_THE_TOP])
def test_a_refused_top_level_field_is_an_error(section: str, reason: str, tmp_path: Path) -> None:
    uses = "    networks: [n]\n" if section.startswith("networks") else ""
    uses += "    volumes: ['v:/v']\n" if section.startswith("volumes") else ""
    uses += "    secrets: [s]\n" if section.startswith("secrets") else ""
    uses += "    configs: [c]\n" if section.startswith("configs") else ""
    compose = write(tmp_path / "r", "compose.yaml", f"services:\n  web:\n    image: busybox\n{uses}{section}\n")
    found = errors_of(compose)
    assert any(reason in error for error in found), found


def test_build_with_an_image_is_a_warning_and_the_image_is_used(tmp_path: Path) -> None:
    compose = write(tmp_path / "w", "compose.yaml", "services:\n  web:\n    image: busybox\n    build: .\n")
    warnings: list[str] = []
    documents = convert(compose, warnings=warnings)
    assert documents["w-web-1"]["spec"]["image"] == "busybox"
    assert warnings == [f"{compose}:4:5: services.web.build: this project does not build images: the image "
                        "named in image: is used"]  # fmt: skip


def test_every_error_of_a_file_at_once_in_file_order(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "bad",
        "compose.yaml",
        textwrap.dedent("""
        services:
          web:
            build: .
            ports: ["http:80"]
            command: 'echo "unterminated'
            environment:
              A: ${NEED:?set NEED}
          db:
            image: busybox
            volumes: ["/anon"]
            scale: 2
            depends_on: [nope]
            mem_limit: lots
        """),
    )
    assert errors_of(compose) == [
        f"{compose}:3:5: services.web.build: {translating.NO_BUILD}",
        f"{compose}:4:13: services.web.ports[0]: 'http:80' is not a port: write e.g. \"8080:80\", "
        '"127.0.0.1:8080:80/udp", "8000-8002:80-82" or the long form {containerPort: 80, hostPort: 8080}',
        f"{compose}:5:14: services.web.command: cannot split 'echo \"unterminated' as a shell would: No closing quotation",
        f"{compose}:7:10: services.web.environment.A: required variable NEED is missing a value: set NEED",
        f"{compose}:10:15: services.db.volumes[0]: an anonymous volume of a replicated service (compose makes one "
        "per replica) has no manifest form: name the volume, or use a tmpfs",
        f"{compose}:12:17: services.db.depends_on.nope: depends on 'nope', which is not an active service of the project",
        f"{compose}:13:16: services.db.mem_limit: 'lots' is not a size; use e.g. 64Mi, 512M, 1Gi or a number of bytes",
    ]


def test_a_yaml_error_has_its_position(tmp_path: Path) -> None:
    compose = write(tmp_path / "y", "compose.yaml", "services:\n  web:\n    image: [busybox\n")
    (error,) = errors_of(compose)
    assert error.startswith(f"{compose}:4:1: YAML syntax error")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("healthcheck: {interval: 5s}", "a healthcheck without test"),
        ("logging: {driver: local}", "logging: only the json-file log is kept"),
    ],
)
def test_what_has_no_manifest_form_is_refused(body: str, reason: str, tmp_path: Path) -> None:
    compose = write(tmp_path / "r", "compose.yaml", f"services:\n  web:\n    image: busybox\n    {body}\n")
    found = errors_of(compose)
    assert any(error.startswith(f"{compose}:4:") and reason in error for error in found), found


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("logging: {driver: json-file, mode: non-blocking}", "logging: `mode` has no manifest field here"),
        ("depends_on: {db: {conditon: service_healthy}}", "depends_on: `conditon` has no manifest field here"),
        ("secrets: [{source: s, owner: me}]", "secrets: `owner` has no manifest field here"),
        ("env_file: [{path: a.env, format: raw}]", "the format option is not supported"),
        ("extends: {service: db, what: 1}", "extends: service and file only"),
        (
            "ports: [{target: 80, published: abc-def}]",
            "services.web.ports[0].hostPort: Input should be a valid integer",
        ),
        ("logging: {options: {max-file: many}}", "maxFiles"),
        ("shm_size: " + "9" * 400 + ".5m", "is too large to be a size"),
    ],
)
def test_nothing_is_dropped_and_nothing_crashes(body: str, reason: str, tmp_path: Path) -> None:
    text = f"services:\n  web:\n    image: busybox\n    {body}\n  db:\n    image: busybox\nsecrets:\n  s: {{file: x}}\n"
    compose = write(tmp_path / "r", "compose.yaml", text)
    found = errors_of(compose)
    assert any(error.startswith(f"{compose}:4:") and reason in error for error in found), found
