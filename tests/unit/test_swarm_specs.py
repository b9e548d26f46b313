"""The swarm backend's translation: a manifest's container as a Swarm ServiceSpec, and services and
tasks read back as the plan's containers (pure functions: no daemon)."""

from __future__ import annotations

import textwrap

from reconciler import manifests, observed, planning, plans
from reconciler.backends.swarm import members, service_specs, service_states

IMAGE = "127.0.0.1:5000/reconciler/busybox:1"


def _request(body: str, name: str = "web", replicas: str = "") -> tuple[manifests.Desired, plans.ContainerRequest]:
    head = (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web, stack: shop}}\nspec:\n  image: {IMAGE}\n"
    )
    text = head + textwrap.indent(textwrap.dedent(body), "  ")
    if replicas:
        text += f"  replicas: {replicas}\n"
    desired = manifests.load_sources([("shop.yaml", text)])
    return desired, planning.container_request(desired.containers[name])


def _template(body: str, name: str = "web") -> dict[str, object]:
    _, request = _request(body, name)
    return service_specs.task_template(request, "web", files=[], volume_options={}, default_network="shop_default")


def test_the_task_template_carries_what_runs_and_how() -> None:
    template = _template("""\
        entrypoint: [sh, -c]
        command: ["exec httpd -f"]
        env: {A: "1"}
        user: "1000"
        workingDir: /srv
        stopSignal: SIGINT
        stopTimeout: 2.5s
        healthcheck: {test: [CMD, "true"], interval: 2s, retries: 4}
        resources: {memory: 64Mi, cpus: 0.5, pids: 50}
        restart: {policy: on-failure, maxRetries: 3, backoff: {initial: 2s}}
        placement: {constraints: ["node.role==worker"]}
        extraHosts: ["db:10.0.0.5"]
        mounts: [{type: tmpfs, target: /cache, size: 1Mi}]
        """)
    container = template["ContainerSpec"]
    assert isinstance(container, dict)
    assert container["Command"] == ["sh", "-c"] and container["Args"] == ["exec httpd -f"]
    assert container["Env"] == ["A=1"] and container["User"] == "1000" and container["Dir"] == "/srv"
    assert container["StopSignal"] == "SIGINT"
    assert container["StopGracePeriod"] == 3_000_000_000  # whole seconds, rounded up (as Docker's stop)
    assert container["Healthcheck"]["Test"] == ["CMD", "true"] and container["Healthcheck"]["Retries"] == 4
    assert container["Hosts"] == ["10.0.0.5 db"]
    assert container["Mounts"] == [{"Type": "tmpfs", "Target": "/cache", "TmpfsOptions": {"SizeBytes": 1 << 20}}]
    # Tasks are labelled with their service, never with the owner labels (a docker engine on the
    # same daemon would take them for containers of its own).
    assert observed.LABEL_KIND not in container["Labels"]
    assert container["Labels"][service_specs.TASK_LABEL] == "web"
    assert template["Resources"] == {"Limits": {"MemoryBytes": 64 << 20, "NanoCPUs": 500_000_000, "Pids": 50}}
    assert template["RestartPolicy"] == {"Condition": "on-failure", "MaxAttempts": 3, "Delay": 2_000_000_000}
    assert template["Placement"] == {"Constraints": ["node.role==worker"]}
    assert template["Networks"] == [{"Target": "shop_default"}]


def test_restart_policies_map_to_swarm_conditions() -> None:
    conditions = {}
    for policy in ("always", "unless-stopped", "on-failure", "no"):
        template = _template(f"restart: {policy}\n")
        conditions[policy] = template["RestartPolicy"]["Condition"]  # type: ignore[index]
    assert conditions == {"always": "any", "unless-stopped": "any", "on-failure": "on-failure", "no": "none"}


def test_declared_networks_keep_their_aliases_but_the_service_name() -> None:
    _, request = _request("networks: [{name: back, aliases: [www, web], external: true}]\n")
    assert service_specs.networks(request.spec, "web", "shop_default") == [{"Target": "back", "Aliases": ["www"]}]


def test_ports_go_through_the_routing_mesh_unless_host_mode_and_dns_round_robin_without_it() -> None:
    _, mesh = _request('ports: ["8080:80"]\n')
    _, host = _request("ports: [{containerPort: 80, hostPort: 8080, mode: host}, {containerPort: 81, mode: host}]\n")
    assert service_specs.endpoint(mesh.spec) == {
        "Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress", "PublishedPort": 8080}]
    }  # fmt: skip
    assert service_specs.endpoint(host.spec) == {"Mode": "dnsrr", "Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "host", "PublishedPort": 8080},
        {"Protocol": "tcp", "TargetPort": 81, "PublishMode": "host"},
    ]}  # fmt: skip
    # A fixed host port cannot be bound twice on a node: the update stops the old task first.
    assert service_specs.update_config(host.spec)["Order"] == "stop-first"
    assert service_specs.update_config(mesh.spec)["Order"] == "start-first"


def test_the_replicas_of_a_port_range_ask_for_one_service() -> None:
    desired, _ = _request('ports: ["8000-8002:80"]\n', name="web-1", replicas="3")
    digests = set()
    for name in ("web-1", "web-2", "web-3"):
        request = planning.container_request(desired.containers[name])
        index = service_specs.replica_index(request, name)
        endpoint = service_specs.endpoint(request.spec, index)
        assert endpoint["Ports"][0]["PublishedPort"] == 8000
        template = service_specs.task_template(request, "web", files=[], volume_options={}, default_network=None)
        digests.add(service_specs.template_digest(template, endpoint))
        assert service_specs.service_name(request, name) == "web"
    assert len(digests) == 1


def test_a_replacement_rolls_back_by_itself_each_new_task_watched_before_the_next() -> None:
    _, request = _request("healthcheck: {test: [CMD, 'true'], startPeriod: 200s}\n")
    config = service_specs.update_config(request.spec)
    assert config["FailureAction"] == "rollback" and config["Parallelism"] == 1 and config["MaxFailureRatio"] == 0
    assert config["Monitor"] == round(service_specs.min_ready(request.spec) * 1e9) > 0
    # Long enough for the health check to pass at all: its start period, two intervals, a timeout.
    assert service_specs.ready_deadline(request.spec) >= 200 + 2 * 30 + 30


def test_what_swarm_cannot_do_is_refused_field_by_field() -> None:
    _, request = _request("""\
        privileged: true
        cpuShares: 512
        networkMode: none
        ipc: host
        mounts: [{type: tmpfs, target: /t, options: [exec]}]
        """)
    found = " | ".join(service_specs.unsupported(request.spec))
    for field in ("privileged", "cpuShares", "networkMode none", "ipc", "tmpfs flags (exec)"):
        assert field in found
    _, plain = _request("restart: always\n")
    assert service_specs.unsupported(plain.spec) == []


def test_a_port_on_one_address_has_no_swarm_equivalent() -> None:
    _, request = _request('ports: ["127.0.0.1:8080:80"]\n')
    assert service_specs.unsupported(request.spec) == [
        "ports: 127.0.0.1: Swarm publishes on every address of a node, not on one"
    ]


def test_secrets_and_configs_are_named_by_their_content() -> None:
    _, request = _request("secrets: [{name: pw, env: HOME}]\n")
    secret = request.spec.secrets[0]
    first = service_specs.file_object_name("shop", secret, b"one", secret=True)
    assert first.startswith("shop_secret_pw_") and len(first) <= 64
    assert service_specs.file_object_name("shop", secret, b"two", secret=True) != first
    reference = service_specs.file_reference(secret, "id1", first, secret=True)
    assert reference == {"SecretID": "id1", "SecretName": first,
                         "File": {"Name": "/run/secrets/pw", "UID": "0", "GID": "0", "Mode": 0o444}}  # fmt: skip


def _service(labels: dict[str, str], *, health: bool = False) -> dict[str, object]:
    container: dict[str, object] = {"Image": f"{IMAGE}@sha256:abc", "Mounts": [{"Type": "volume", "Source": "data"}]}
    if health:
        container["Healthcheck"] = {"Test": ["CMD", "true"]}
    return {"ID": "svc1", "CreatedAt": "2026-12-01T00:00:00Z", "Spec": {"Labels": labels, "TaskTemplate": {
        "ContainerSpec": container, "Networks": [{"Target": "net1"}],
        "Resources": {"Limits": {"MemoryBytes": 1 << 26}}}}}  # fmt: skip


def _task(state: str, created: str, slot: int, *, desired: str = "running", exit_code: int = 0) -> dict[str, object]:
    return {"ID": created, "ServiceID": "svc1", "DesiredState": desired, "CreatedAt": created, "Slot": slot,
            "Status": {"State": state, "Timestamp": "2026-12-01T00:00:09Z",
                       "ContainerStatus": {"ExitCode": exit_code}}}  # fmt: skip


def test_each_member_is_a_container_with_the_state_its_tasks_give_it() -> None:
    record = {
        "web-1": members.Member("h1", "running", "t"), "web-2": members.Member("h1", "running", "t"),
        "web-3": members.Member("h2", "created", "t2"), "web-4": members.Member("h1", "stopped", "t"),
    }  # fmt: skip
    labels = {observed.LABEL_STACK: "shop", observed.LABEL_KIND: "Container", observed.LABEL_HASH: "h1",
              observed.LABEL_SPEC: "{}", members.LABEL: members.label(record)}  # fmt: skip
    # Slot 2's first task failed and Swarm started another in its place.
    tasks = [_task("running", "2026-12-01T00:00:02Z", 1), _task("starting", "2026-12-01T00:00:01Z", 2),
             _task("failed", "2026-12-01T00:00:00Z", 2, desired="shutdown", exit_code=3)]  # fmt: skip
    found = service_states.observed_members(_service(labels, health=True), tasks, {"net1": "back"})
    assert {name: c.state for name, c in found.items()} == {
        "web-1": "running",
        "web-2": "restarting",
        "web-3": "created",
        "web-4": "exited",
    }
    first = found["web-1"]
    assert first.health == "healthy" and first.started_at == 1796083202.0
    assert first.image == IMAGE and first.networks == ("back",) and first.volumes == ("data",)
    assert first.resources == observed.ObservedResources(memory=1 << 26)
    assert first.restart_count == 1 and first.stack == "shop"
    # The member's own hash; the recorded spec only where it is the member's.
    assert found["web-3"].spec_hash == "h2" and observed.LABEL_SPEC not in found["web-3"].labels
    assert found["web-1"].labels[observed.LABEL_SPEC] == "{}"
    assert members.LABEL not in first.labels


def test_a_task_that_ended_by_itself_is_an_exited_container_and_a_scaled_away_one_is_gone() -> None:
    record = {"job": members.Member("h1", "running", "t")}
    labels = {observed.LABEL_HASH: "h1", members.LABEL: members.label(record)}
    # restart: no → Swarm's condition none: the ended task is shut down and not replaced.
    ended = [_task("failed", "2026-12-01T00:00:05Z", 1, desired="shutdown", exit_code=3)]
    found = service_states.observed_members(_service(labels), ended, {})
    assert (found["job"].state, found["job"].exit_code) == ("exited", 3)
    scaled_away = [_task("shutdown", "2026-12-01T00:00:05Z", 1, desired="shutdown")]
    assert service_states.current_tasks(_service(labels), scaled_away) == []


def test_the_task_a_start_first_update_kept_running_is_the_current_one() -> None:
    record = {"web": members.Member("h1", "running", "t")}
    labels = {observed.LABEL_HASH: "h1", members.LABEL: members.label(record)}
    # The new task (newer) turned unhealthy and was shut down by the rollback; the old one serves on.
    tasks = [_task("running", "2026-12-01T00:00:01Z", 1),
             _task("shutdown", "2026-12-01T00:00:05Z", 1, desired="shutdown")]  # fmt: skip
    assert [t["CreatedAt"] for t in service_states.current_tasks(_service(labels), tasks)] == ["2026-12-01T00:00:01Z"]
    assert service_states.observed_members(_service(labels), tasks, {})["web"].state == "running"
