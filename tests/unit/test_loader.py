"""Loading manifests: every mistake reported at once, positioned, with hints; cross-object checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler import errors, manifests


def diagnostics(text: str, file: str = "stack.yaml") -> list[str]:
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(textwrap.dedent(text), file)
    return [d.render() for d in caught.value.diagnostics]


def test_every_mistake_of_a_file_is_reported_with_its_position() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: Web_1}
        spec:
          image: busybox
          workdir: /srv
          ports:
            - {containerPort: 8080, hostPort: 99999}
          mounts:
            - {type: bind, source: relative, target: /etc/web}
          restart: {policy: sometimes}
          stopTimeout: 10 parsecs
        """)
    assert found == [
        "stack.yaml:3:18: metadata.name: 'Web_1' is not a DNS label: use 1-63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
        "stack.yaml:6:3: spec.workdir: unknown field `workdir`; did you mean `workingDir`?",
        "stack.yaml:8:39: spec.ports[0].hostPort: Input should be less than or equal to 65535",
        "stack.yaml:10:28: spec.mounts[0].source: 'relative' must be an absolute path",
        "stack.yaml:11:21: spec.restart.policy: must be one of 'no', 'always', 'on-failure' or 'unless-stopped', "
        "got 'sometimes'",
        "stack.yaml:12:16: spec.stopTimeout: '10 parsecs' is not a duration; use e.g. 100ms, 10s, 1m30s, 2h",
    ]


def test_yaml_syntax_error_is_positioned() -> None:
    found = diagnostics("apiVersion: reconciler/v1\nkind: [Container\n")
    assert len(found) == 1 and found[0].startswith("stack.yaml:3:1: YAML syntax error")


def test_duplicate_keys_are_errors_not_silently_overwritten() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec: {image: busybox, image: nginx}
        """)
    assert found == ["stack.yaml:4:24: image: duplicate key (first at line 4)"]


def test_unknown_kind_and_missing_fields() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Contaner
        metadata: {name: x}
        ---
        kind: Volume
        metadata: {}
        """)
    assert found == [
        "stack.yaml:2:7: kind: unknown kind 'Contaner'; expected one of Container, Network, Volume; "
        "did you mean `Container`?",
        "stack.yaml:5:1: apiVersion: required field is missing",
        "stack.yaml:6:11: metadata.name: required field is missing",
    ]


def test_cross_object_checks() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: a}
        spec:
          image: busybox
          ports: [{containerPort: 80, hostPort: 8080}]
          mounts: [{type: volume, source: data, target: /data}, {type: volume, source: ext, target: /ext, external: true}]
          dependsOn: [b]
          networks: [{name: backnet}]
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: b}
        spec:
          image: busybox
          ports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}]
          volumesFrom: [a]
          dependsOn: [{name: ghost}]
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: a}
        spec: {image: busybox}
        """)
    assert found == [
        "stack.yaml:7:35: spec.mounts[0].source: volume 'data' is not declared in the manifests "
        "(declare a Volume, or mark the mount external: true)",
        "stack.yaml:8:14: spec.dependsOn: dependency cycle: a → b → a",
        "stack.yaml:9:21: spec.networks[0].name: network 'backnet' is not declared in the manifests "
        "(declare a Network, or mark the attachment external: true to use another stack's)",
        "stack.yaml:16:41: spec.ports[0].hostPort: host port 8080/tcp is already published by container 'a' (ports[0])",
        "stack.yaml:18:22: spec.dependsOn[0].name: container 'ghost' is not declared in the manifests",
        "stack.yaml:22:18: metadata.name: duplicate Container 'a' (first declared at stack.yaml:3:18)",
    ]


def test_cycles_are_named() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: one}
        spec: {image: busybox, dependsOn: [two]}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: two}
        spec: {image: busybox, dependsOn: [three]}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: three}
        spec: {image: busybox, dependsOn: [one]}
        """)
    assert found == ["stack.yaml:4:35: spec.dependsOn: dependency cycle: one → two → three → one"]


def test_a_broken_object_does_not_cascade_into_not_declared_errors() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Volume
        metadata: {name: data}
        spec: {driver: nfs}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: app}
        spec: {image: busybox, mounts: [{type: volume, source: data, target: /d}]}
        """)
    assert len(found) == 1 and "spec.driver" in found[0]


def test_values_are_parsed_and_normalised() -> None:
    desired = manifests.load_text(
        textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web, stack: shop}
        spec:
          image: 127.0.0.1:5000/shop/web:1.4
          env: [A=1, B=x=y]
          command: sleep 10
          stopTimeout: 1m30s
          stopSignal: int
          resources: {memory: 256Mi, cpus: 0.5, pids: 200}
          restart: {policy: on-failure, maxRetries: 3, backoff: {initial: 100ms, max: 1m}}
          healthcheck: {test: [CMD-SHELL, "true"]}
          capAdd: [net_admin]
        """)
    )
    spec = desired.containers["web"].spec
    assert spec.env == {"A": "1", "B": "x=y"}
    assert spec.command == ["sleep", "10"]
    assert spec.stop_timeout == 90.0
    assert spec.stop_signal == "SIGINT"
    assert spec.resources.memory == 256 * 1024 * 1024
    assert spec.restart.backoff is not None and spec.restart.backoff.initial == pytest.approx(0.1)
    assert spec.healthcheck is not None and spec.healthcheck.interval == 30.0
    assert spec.cap_add == ["CAP_NET_ADMIN"]
    assert desired.stacks == {"shop"}


def test_env_files_are_read_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "web.env").write_text("# comment\nA=from-file\nexport B='quoted'\n")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec: {image: busybox, envFiles: [conf/web.env], env: {A: from-manifest}}
        """)
    )
    desired = manifests.load([str(tmp_path)])
    container = desired.containers["web"]
    assert container.effective_env == {"A": "from-manifest", "B": "quoted"}
    assert container.stack == "web"  # the file's stem
    assert list(container.file_digests) == ["conf/web.env"]


def test_missing_env_file_is_positioned(tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
        "spec: {image: busybox, envFiles: [nope.env]}\n"
    )
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load([str(manifest)])
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column, diagnostic.field) == (4, 35, "spec.envFiles[0]")
    assert "cannot read" in diagnostic.message


def test_folders_skip_dotfiles_and_non_yaml(tmp_path: Path) -> None:
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / "a.yml").write_text("apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v}\n")
    assert set(manifests.load([str(tmp_path)]).volumes) == {"v"}


def test_unreadable_path_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load([str(tmp_path / "missing.yaml")])
    assert "cannot read" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("1m30s", 90), ("2h", 7200), ("0", 0), (5, 5.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert manifests.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10 parsecs", "-1s", "1x", "s", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        manifests.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256Mi", 256 * 2**20), ("1G", 10**9), ("1Gi", 2**30), (1024, 1024), ("64K", 64000), ("1MB", 10**6),
     # Docker's lowercase letters are powers of 1024: ``docker run -m 64m`` is 64 MiB.
     ("64k", 64 * 2**10), ("64m", 64 * 2**20), ("1g", 2**30), ("2t", 2 * 2**40), ("1p", 2**50), ("512b", 512)],
)  # fmt: skip
def test_sizes(text: object, size: int) -> None:
    assert manifests.parse_size(text) == size
    assert manifests.parse_size(manifests.format_size(size)) == size


def test_engine_facing_limits_are_checked() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: a}
        spec: {image: busybox, resources: {cpus: 0.123456, memory: 1Mi}}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: b}
        spec: {image: busybox, networkMode: "container:a", hostname: bee}
        """)
    assert found == [
        "stack.yaml:4:42: spec.resources.cpus: cpus 0.123456 has more than 5 decimal places",
        "stack.yaml:4:60: spec.resources.memory: memory 1Mi is below the 6Mi minimum (as Docker's)",
        "stack.yaml:9:7: spec: hostname cannot be set with networkMode container:NAME (it shares that container's)",
    ]


def test_logging_rotation_is_checked_and_positioned() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec:
          image: busybox
          logging: {maxFiles: 3}
        """)
    assert found == ["stack.yaml:6:12: spec.logging: maxFiles needs maxSize (files are rotated when they reach it)"]
    desired = manifests.load_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
        "spec: {image: busybox, logging: {maxSize: 10Mi, maxFiles: 3}}\n"
    )
    assert desired.containers["web"].spec.logging == manifests.Logging(max_size=10 * 1024 * 1024, max_files=3)


def test_compose_habits_are_pointed_at_the_right_field() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec:
          image: busybox
          environment: {A: b}
          volumes: ["data:/var/lib/data"]
          mem_limit: 64m
          container_name: web
          ports: ["8080:80", 9000, "127.0.0.1:53:53/udp", "8000-8010:80-81", "http:80"]
        """)
    assert found == [
        "stack.yaml:6:3: spec.environment: unknown field `environment`; did you mean `env`?",
        "stack.yaml:7:3: spec.volumes: unknown field `volumes`; did you mean `mounts`? "
        "A volume mount: `mounts: [{type: volume, source: data, target: /var/lib/data}]`",
        "stack.yaml:8:3: spec.mem_limit: unknown field `mem_limit`; did you mean `resources.memory`?",
        "stack.yaml:9:3: spec.container_name: unknown field `container_name`; the container's name is `metadata.name`",
        "stack.yaml:10:51: spec.ports[3]: '8000-8010:80-81': the host range and the container range must be as "
        "long as each other",
        'stack.yaml:10:70: spec.ports[4]: \'http:80\' is not a port: write e.g. "8080:80", "127.0.0.1:8080:80/udp", '
        '"8000-8002:80-82" or the long form {containerPort: 80, hostPort: 8080}',
    ]


def test_ports_as_compose_writes_them() -> None:
    desired = manifests.load_text(
        textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec:
          image: busybox
          ports: ["8080:80", 9000, "127.0.0.1:53:53/udp", "8000-8002:80-82", "127.0.0.1::443", "[::1]:8443:443",
                  {containerPort: 22, hostPort: 2222}]
        """),
        "stack.yaml",
    )
    ports = [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in desired.containers["web"].spec.ports]
    assert ports == [
        (None, 8080, 80, "tcp"), (None, None, 9000, "tcp"), ("127.0.0.1", 53, 53, "udp"), (None, 8000, 80, "tcp"),
        ("127.0.0.1", None, 443, "tcp"), ("::1", 8443, 443, "tcp"), (None, 2222, 22, "tcp"),
        (None, 8001, 81, "tcp"), (None, 8002, 82, "tcp"),
    ]  # fmt: skip


def test_a_habit_hint_only_where_its_field_is() -> None:
    # ``volumes`` in a Network's spec is no container's mounts: the ordinary did-you-mean applies.
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Network
        metadata: {name: net}
        spec: {volumes: []}
        """)
    assert found == ["stack.yaml:4:8: spec.volumes: unknown field `volumes`"]


@pytest.mark.parametrize(
    ("restart", "policy", "retries"),
    [("always", "always", None), ("unless-stopped", "unless-stopped", None), ("on-failure:3", "on-failure", 3),
     ('"no"', "no", None), ("no", "no", None), ("{policy: always}", "always", None)],
)  # fmt: skip
def test_restart_short_form(restart: str, policy: str, retries: int | None) -> None:
    desired = manifests.load_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web}}\n"
        f"spec: {{image: busybox, restart: {restart}}}\n"
    )
    assert desired.containers["web"].spec.restart == manifests.Restart(policy=policy, max_retries=retries)


def test_restart_short_form_errors_keep_their_position() -> None:
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec: {image: busybox, restart: sometimes}
        """)
    assert found == [
        "stack.yaml:4:33: spec.restart.policy: must be one of 'no', 'always', 'on-failure' or 'unless-stopped', "
        "got 'sometimes'"
    ]


def test_a_string_health_check_runs_in_the_shell() -> None:
    desired = manifests.load_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
        'spec: {image: busybox, healthcheck: {test: "wget -q -O- http://localhost/ || exit 1"}}\n'
    )
    healthcheck = desired.containers["web"].spec.healthcheck
    assert healthcheck is not None and healthcheck.test == ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"]
    found = diagnostics("""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {name: web}
        spec: {image: busybox, healthcheck: {test: " "}}
        """)
    assert found == [
        "stack.yaml:4:44: spec.healthcheck.test: an empty test checks nothing; write a command, or [NONE] to turn "
        "the check off"
    ]
