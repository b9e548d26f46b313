"""``reconcile render --to kubernetes``: every example manifest and a table of test stacks render to
objects that validate against the schemas of Kubernetes 1.30 and 1.37 (kubernetes-validate, strict:
no unknown field; a kubernetes-validate too old to know 1.37 fails naming it), with names Kubernetes
accepts; what has no equivalent is a message naming object and field."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reconciler import cli, manifests
from reconciler.render import kubernetes

# The oldest release the README promises, and the newest kubernetes-validate knew when this was written.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests"
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
HEAD = "apiVersion: reconciler/v1\n"


def check_valid(documents: list[dict[str, Any]]) -> None:
    """Each document passes the schema of its kind, and its names are names Kubernetes takes
    (the schemas do not check those)."""
    for document in documents:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)
        name = document["metadata"]["name"]
        assert SUBDOMAIN.match(name) and len(name) <= 253, name
        if document["kind"] == "Service":
            assert DNS_1035.match(name), name
        if document["kind"] in ("Deployment", "StatefulSet", "Job", "PersistentVolumeClaim"):
            assert DNS_LABEL.match(name), name
        for labels in _label_sets(document):
            for key, value in labels.items():
                prefix, _, label = key.rpartition("/")
                assert LABEL_NAME.match(label) and (not prefix or SUBDOMAIN.match(prefix)), key
                assert LABEL_VALUE.match(value), (key, value)
        assert len({d["kind"] + "/" + d["metadata"]["name"] for d in documents}) == len(documents)


def _label_sets(document: dict[str, Any]) -> list[dict[str, str]]:
    found = [document["metadata"].get("labels", {})]
    template = document.get("spec", {}).get("template")
    if template:
        found.append(template["metadata"]["labels"])
        volumes = template["spec"].get("volumes", [])
        assert len({v["name"] for v in volumes}) == len(volumes)
        assert all(DNS_LABEL.match(v["name"]) for v in volumes)
    return found


def render(tmp_path: Path, text: str) -> kubernetes.Rendering:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    rendering = kubernetes.render(manifests.load([str(path)]))
    check_valid(rendering.documents)
    return rendering


def kinds(rendering: kubernetes.Rendering) -> list[str]:
    return [f"{d['kind']}/{d['metadata']['name']}" for d in rendering.documents]


def one(rendering: kubernetes.Rendering, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in rendering.documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod(rendering: kubernetes.Rendering, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(rendering, kind, name)["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_renders_valid_objects(example: str) -> None:
    rendering = kubernetes.render(manifests.load([str(EXAMPLES / example)]))
    assert rendering.documents
    check_valid(rendering.documents)


def test_the_examples_together_map_each_part() -> None:
    rendering = kubernetes.render(manifests.load([str(EXAMPLES / "shop.yaml"), str(EXAMPLES / "catalog.yaml")]))
    check_valid(rendering.documents)
    assert one(rendering, "StatefulSet", "shop-db")["spec"]["serviceName"] == "shop-db"
    assert one(rendering, "Deployment", "catalog")["spec"]["replicas"] == 3
    assert one(rendering, "Job", "shop-api")["spec"]["backoffLimit"] == 5
    assert one(rendering, "Service", "db")["spec"] == {
        "clusterIP": "None",
        "selector": {"app.kubernetes.io/part-of": "shop", "reconciler.alias/db": "true"},
    }
    labels = one(rendering, "Deployment", "catalog")["spec"]["template"]["metadata"]["labels"]
    assert labels["reconciler.network/shop-net"] == "true" and labels["app.kubernetes.io/part-of"] == "catalog"
    assert "reconciler.service" not in labels
    secret = one(rendering, "Secret", "catalog-token")
    assert base64.b64decode(secret["data"]["catalog-token"]) == (EXAMPLES / "catalog-token.txt").read_bytes()
    # The loopback-only ports are not exposed, and the message says how to reach them.
    assert not [k for k in kinds(rendering) if k.endswith("-published")]
    assert any(
        "shop-web: spec.ports[0]: hostIP 127.0.0.1 has no equivalent" in m
        and "kubectl port-forward deployment/shop-web 18080:8080" in m
        for m in rendering.messages
    )
    assert any("Container shop-db: spec.resources.pids has no equivalent" in m for m in rendering.messages)
    assert any(
        "Container shop-api: spec.dependsOn shop-db (healthy) has no equivalent" in m for m in rendering.messages
    )


def container(name: str, spec: str, stack: str = "t") -> str:
    return f"{HEAD}kind: Container\nmetadata: {{name: {name}, stack: {stack}}}\nspec:\n  image: busybox:1\n{spec}---\n"


STACKS: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (manifest text, objects expected (kind/name), message fragments expected)
    "replicas, one Deployment": (
        container("web", "  replicas: 4\n  restart: always\n  ports: ['8000-8003:80']\n"),
        ["Service/web", "Service/web-published", "Deployment/web"],
        ["spec.ports[0]: a host port per replica becomes one port, 8000, balanced over the 4 replicas"],
    ),
    "volume: StatefulSet and claim": (
        f"{HEAD}kind: Volume\nmetadata: {{name: data, stack: t}}\nspec: {{options: {{type: none}}}}\n---\n"
        + container("db", "  restart: always\n  mounts: [{type: volume, source: data, target: /var/lib/db}]\n"),
        ["PersistentVolumeClaim/data", "Service/db", "StatefulSet/db"],
        ["Volume data: a Volume has no size", "Volume data: spec.options has no equivalent"],
    ),
    "a volume two pods share: ReadWriteMany": (
        f"{HEAD}kind: Volume\nmetadata: {{name: shared, stack: t}}\n---\n"
        + container("a", "  restart: always\n  replicas: 2\n  mounts: [{type: volume, source: shared, target: /s}]\n"),
        ["PersistentVolumeClaim/shared", "Service/a", "StatefulSet/a"],
        ["Volume shared: mounted by 2 pods: ReadWriteMany"],
    ),
    "secrets and configs": (
        container(
            "app",
            "  restart: always\n  secrets: [{name: Api_Key, env: RENDER_TEST_SECRET, uid: 1000, mode: 0400}]\n"
            "  configs: [{name: app.conf, env: RENDER_TEST_CONFIG, target: /etc/app.conf}]\n",
        ),
        ["Secret/api-key", "ConfigMap/app.conf", "Service/app", "Deployment/app"],
        ["Container app: Api_Key: uid and gid have no equivalent"],
    ),
    "health check, resources, security": (
        container(
            "svc",
            "  restart: {policy: always, onUnhealthy: true}\n"
            "  healthcheck: {test: 'wget -q -O- localhost', interval: 1500ms, timeout: 1s, retries: 2, startPeriod: 10s}\n"
            "  resources: {memory: 100Mi, cpus: 0.5, pids: 50}\n  memoryReservation: 50Mi\n  cpuShares: 256\n"
            "  user: '1000:www'\n  capAdd: [NET_ADMIN]\n  capDrop: [ALL]\n  readOnlyRootfs: true\n"
            "  securityOpt: [no-new-privileges, apparmor=custom]\n  init: true\n  shmSize: 128Mi\n"
            "  sysctls: {net.core.somaxconn: 1024}\n  groupAdd: ['2000', audio]\n  stopSignal: SIGQUIT\n"
            "  extraHosts: ['db.local:10.0.0.5', 'gw:host-gateway']\n  dnsSearch: [example.com]\n"
            "  dnsOptions: ['ndots:2']\n  hostname: box.example.com\n",
        ),
        ["Service/svc", "Deployment/svc"],
        [
            "spec.healthcheck.interval: 1.5s is rounded up to 2s",
            "spec.user group 'www' is a name",
            "spec.securityOpt apparmor=custom has no equivalent",
            "spec.groupAdd 'audio' is a name",
            "spec.stopSignal SIGQUIT has no equivalent",
            "spec.extraHosts gw:host-gateway has no equivalent",
            "spec.resources.pids has no equivalent",
            "spec.hostname's domain example.com has no equivalent",
        ],
    ),
    "ports: LoadBalancer, random, udp, an address": (
        f"{HEAD}kind: Network\nmetadata: {{name: front, stack: t}}\nspec: {{internal: true}}\n---\n"
        + container(
            "edge",
            "  restart: always\n  networks: [{name: front, aliases: [www, 9lives]}]\n"
            "  ports: ['80', '8053:53/udp', '10.1.2.3:8443:443']\n",
        ),
        [
            "NetworkPolicy/front",
            "NetworkPolicy/edge-published",
            "Service/edge",
            "Service/www",
            "Service/edge-published",
            "Deployment/edge",
        ],
        [
            "Network front: spec.internal has no equivalent",
            "the name 9lives cannot be a Service's",
            "spec.ports[2]: hostIP 10.1.2.3 has no equivalent",
        ],
    ),
    "restart no and on-failure: Jobs": (
        container("once", "  command: ['true']\n") + container("retry", "  restart: on-failure\n"),
        ["Service/once", "Service/retry", "Job/once", "Job/retry"],
        ["Container once: restart no is rendered as a Job", "retry: spec.restart on-failure without maxRetries"],
    ),
    "swarm fields: placement, rollout, host-mode ports": (
        container(
            "edge",
            "  restart: always\n  strategy: stop-first\n  minReadySeconds: 2500ms\n"
            "  progressDeadline: 90s\n"
            "  placement: {constraints: ['node.labels.disk == ssd', 'node.hostname!=old-box',"
            " 'node.platform.arch==x86_64', 'node.role==worker', 'engine.labels.zone==a', 'node.labels.x==a b']}\n"
            "  ports: [{containerPort: 80, hostPort: 8080, mode: host}, {containerPort: 81, mode: host},"
            " {containerPort: 443, hostPort: 8443}]\n",
        )
        + f"{HEAD}kind: Volume\nmetadata: {{name: data, stack: t}}\n---\n"
        + container(
            "db",
            "  restart: always\n  strategy: start-first\n  progressDeadline: 60s\n"
            "  mounts: [{type: volume, source: data, target: /data}]\n",
        )
        + container("once", "  strategy: stop-first\n  minReadySeconds: 1s\n  command: ['true']\n"),
        [
            "Service/edge",
            "Service/edge-published",
            "Deployment/edge",
            "PersistentVolumeClaim/data",
            "Service/db",
            "StatefulSet/db",
            "Service/once",
            "Job/once",
        ],
        [
            "Container edge: spec.minReadySeconds: 2.5s is rounded up to 3s",
            "Container edge: a rollout that misses progressDeadlineSeconds is marked failed, not rolled back",
            "Container edge: spec.placement.constraints[3] 'node.role==worker' has no equivalent",
            "Container edge: spec.placement.constraints[4] 'engine.labels.zone==a' has no equivalent",
            "Container edge: spec.placement.constraints[5] 'node.labels.x==a b' has no equivalent",
            "Container edge: spec.ports[1]: mode host with a random port has no equivalent",
            "Container db: spec.progressDeadline has no equivalent for a StatefulSet",
            "Container once: spec.strategy has no equivalent for a Job",
            "Container once: spec.minReadySeconds has no equivalent for a Job",
        ],
    ),
    "no equivalent: named, never dropped": (
        container(
            "odd",
            "  restart: always\n  ulimits: {nofile: 1024}\n  devices: [/dev/fuse]\n  cpuset: '0'\n"
            "  oomScoreAdj: 10\n  logging: {maxSize: 1Mi}\n  domainname: example.org\n  dns: [1.1.1.1]\n"
            "  mounts: [{type: bind, source: /srv, target: /srv}, {type: tmpfs, target: /tmp, mode: 01777}]\n"
            "  ipc: shareable\n",
        )
        + container(
            "peer", "  restart: always\n  networkMode: container:odd\n  pid: container:odd\n  volumesFrom: [odd]\n"
        ),
        ["Service/odd", "Service/peer", "Deployment/odd", "Deployment/peer"],
        [
            f"Container odd: spec.{f} has no equivalent in Kubernetes"
            for f in ("ulimits", "devices", "cpuset", "oomScoreAdj", "logging", "domainname", "dns")
        ]
        + [
            "Container odd: spec.mounts[0] binds /srv: rendered as a hostPath",
            "Container odd: spec.mounts[1] tmpfs mode and options have no equivalent",
            "Container peer: spec.networkMode container:odd has no equivalent",
            "Container peer: spec.pid container:odd has no equivalent",
            "Container peer: spec.volumesFrom has no equivalent",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(STACKS))
def test_test_stacks_render_valid_objects_and_name_what_has_no_equivalent(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_TEST_SECRET", "s3cret-value")
    monkeypatch.setenv("RENDER_TEST_CONFIG", "listen 80\n")
    text, objects, messages = STACKS[case]
    rendering = render(tmp_path, text)
    assert sorted(kinds(rendering)) == sorted(objects)
    for fragment in messages:
        assert any(fragment in message for message in rendering.messages), (fragment, rendering.messages)
    assert not any("s3cret-value" in message for message in rendering.messages)


def test_the_mapped_fields_land_where_kubernetes_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_TEST_SECRET", "s3cret-value")
    monkeypatch.setenv("RENDER_TEST_CONFIG", "listen 80\n")
    rendering = render(tmp_path, STACKS["health check, resources, security"][0] + STACKS["secrets and configs"][0])
    spec = pod(rendering, "Deployment", "svc")
    (main,) = spec["containers"]
    probe = {
        "exec": {"command": ["/bin/sh", "-c", "wget -q -O- localhost"]},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "failureThreshold": 2,
    }
    assert main["readinessProbe"] == probe and main["livenessProbe"] == probe
    assert main["startupProbe"] == {**probe, "failureThreshold": 5 + 2}
    assert main["resources"] == {
        "limits": {"memory": "100Mi", "cpu": "500m"},
        "requests": {"memory": "50Mi", "cpu": "250m"},
    }
    assert main["securityContext"] == {
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert spec["shareProcessNamespace"] is True and spec["hostname"] == "box"
    assert spec["securityContext"] == {
        "supplementalGroups": [2000],
        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
    }
    assert {"name": "shm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    assert spec["hostAliases"] == [{"ip": "10.0.0.5", "hostnames": ["db.local"]}]
    assert spec["dnsConfig"] == {"searches": ["example.com"], "options": [{"name": "ndots", "value": "2"}]}
    app = pod(rendering, "Deployment", "app")
    secret_volume = next(v for v in app["volumes"] if "secret" in v)
    assert secret_volume["secret"] == {
        "secretName": "api-key",
        "items": [{"key": "Api_Key", "path": "Api_Key", "mode": 0o400}],
    }
    assert {
        "name": secret_volume["name"],
        "mountPath": "/run/secrets/Api_Key",
        "subPath": "Api_Key",
        "readOnly": True,
    } in app["containers"][0]["volumeMounts"]
    assert one(rendering, "ConfigMap", "app.conf")["data"] == {"app.conf": "listen 80\n"}
    assert base64.b64decode(one(rendering, "Secret", "api-key")["data"]["Api_Key"]) == b"s3cret-value"


def test_published_ports_and_network_policies(tmp_path: Path) -> None:
    rendering = render(tmp_path, STACKS["ports: LoadBalancer, random, udp, an address"][0])
    assert one(rendering, "Service", "edge-published")["spec"] == {
        "type": "LoadBalancer",
        "selector": {"app.kubernetes.io/name": "edge", "app.kubernetes.io/part-of": "t"},
        "ports": [
            {"name": "tcp-80", "port": 80, "targetPort": 80, "protocol": "TCP"},
            {"name": "udp-8053", "port": 8053, "targetPort": 53, "protocol": "UDP"},
            {"name": "tcp-8443", "port": 8443, "targetPort": 443, "protocol": "TCP"},
        ],
    }
    members = {"matchLabels": {"reconciler.network/front": "true"}}
    assert one(rendering, "NetworkPolicy", "front")["spec"] == {
        "podSelector": members,
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": members}]}],
    }
    ingress = one(rendering, "NetworkPolicy", "edge-published")["spec"]["ingress"]
    assert ingress == [
        {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}]}
    ]


def test_the_command_prints_yaml_and_warns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = str(EXAMPLES / "catalog.yaml")
    assert cli.main(["render", "--to", "kubernetes", "-f", catalog]) == 0
    captured = capsys.readouterr()
    documents = list(yaml.safe_load_all(captured.out))
    check_valid(documents)
    assert [d["kind"] for d in documents] == ["Secret", "Service", "Deployment"]
    assert "warning: Container catalog: spec.ports[0]: hostIP 127.0.0.1 has no equivalent" in captured.err
    assert "warning: the output holds 1 Secret(s) with their content" in captured.err
    assert "demo-token" not in captured.err
    out = tmp_path / "catalog.k8s.yaml"
    assert cli.main(["render", "--to", "kubernetes", "-f", catalog, "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert list(yaml.safe_load_all(out.read_text())) == documents
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_compose_file_renders_as_its_manifests_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        "name: demo\nservices:\n  web:\n    image: nginx:1\n    deploy: {replicas: 2}\n"
        "    restart: always\n    ports: ['8080-8081:80']\n"
    )
    assert cli.main(["render", "--to", "kubernetes", "-f", str(compose)]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    check_valid(documents)
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "demo"


def test_swarm_placement_rollout_and_host_ports_land_where_kubernetes_reads_them(tmp_path: Path) -> None:
    rendering = render(tmp_path, STACKS["swarm fields: placement, rollout, host-mode ports"][0])
    edge = one(rendering, "Deployment", "edge")["spec"]
    assert edge["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert (edge["minReadySeconds"], edge["progressDeadlineSeconds"]) == (3, 90)
    terms = edge["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "disk", "operator": "In", "values": ["ssd"]},
        {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["old-box"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
    ]}]}  # fmt: skip
    # mode host: the port on the node that runs each pod; only the ingress port is a LoadBalancer's.
    assert edge["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "hostPort": 8080},
        {"containerPort": 81, "protocol": "TCP"},
        {"containerPort": 443, "protocol": "TCP"},
    ]
    assert [p["port"] for p in one(rendering, "Service", "edge-published")["spec"]["ports"]] == [8443]
    db = one(rendering, "StatefulSet", "db")["spec"]
    assert db["minReadySeconds"] == 3 and "strategy" not in db and "progressDeadlineSeconds" not in db
    # The defaults: start-first, 3 s, the deadline the planner would give (120 s).
    default = render(tmp_path, container("web", "  restart: always\n"))
    web = one(default, "Deployment", "web")["spec"]
    assert web["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert (web["minReadySeconds"], web["progressDeadlineSeconds"]) == (3, 120)
    assert "affinity" not in web["template"]["spec"]
