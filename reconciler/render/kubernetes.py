"""The desired state as Kubernetes objects, ready for ``kubectl apply``: ``reconcile render --to kubernetes``.

Where it sits: the top of :mod:`reconciler.render`, over :mod:`.pods` (one container's pod
template). It reads a loaded :class:`manifests.Desired` and returns plain dicts (one per Kubernetes
object, in an order ``kubectl apply`` can create them in) and messages, each naming the object and
field that has no equivalent. The README's "When one host is not enough" table is the mapping; the
choices in brief:

* one workload per service: the replicas NAME-1 … NAME-N (label :data:`vocabulary.SERVICE_LABEL`)
  become one object with ``replicas: N``; restart ``always``/``unless-stopped`` is a Deployment, or a
  StatefulSet when the container mounts a named volume (one pod replaced at a time, never two on
  the claim during an update); ``no`` and ``on-failure`` are a Job, which runs to completion;
* a replacement's ``strategy``, ``minReadySeconds`` and deadline are the Deployment's rolling
  update, one pod at a time (Kubernetes stops a late rollout but does not roll it back: a message
  says so); Swarm's placement constraints are a node affinity (:func:`pods.affinity`) and its
  ``mode: host`` ports a hostPort;
* every Volume is a PersistentVolumeClaim (ReadWriteMany when more than one pod mounts it);
* names: a headless Service per service and per network alias (DNS answers the pods' addresses,
  every port, as Docker's embedded DNS does); published ports: a LoadBalancer Service on the host
  port (a NodePort would have to move into 30000-32767); a port published on a loopback address
  only is *not* exposed (Kubernetes has no "this node only"): ``kubectl port-forward`` is the way;
* a NetworkPolicy per network: pods on it (labelled ``reconciler.network/NAME``) may reach each
  other, and pods with published ports take traffic on them from anywhere.

Secrets' contents go into the Secret objects (base64, which is no encryption); no message here
carries a content, and the caller warns that its output holds secrets. Pure: no I/O, no YAML.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import manifests, vocabulary
from reconciler.manifests import models
from reconciler.render import pods

NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
NETWORK_LABEL = "reconciler.network/"
ALIAS_LABEL = "reconciler.alias/"
DEFAULT_CLAIM_SIZE = "1Gi"

Json = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Rendering:
    """The objects, in apply order, and a message for each thing that has no equivalent."""

    documents: list[Json]
    messages: list[str]

    @property
    def secrets(self) -> int:
        return sum(1 for document in self.documents if document["kind"] == "Secret")


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    """The containers of one service: one container, or the replicas of ``replicas: N``."""

    name: str
    first: manifests.DesiredContainer
    replicas: int

    @property
    def spec(self) -> models.ContainerSpec:
        return self.first.spec

    @property
    def selector(self) -> dict[str, str]:
        return {NAME_LABEL: self.name, PART_OF_LABEL: self.first.stack}


def services(desired: manifests.Desired) -> list[Service]:
    """The desired containers grouped by service (replicas by their label), by name."""
    groups: dict[str, list[manifests.DesiredContainer]] = collections.defaultdict(list)
    for container in desired.containers.values():
        groups[container.labels.get(vocabulary.SERVICE_LABEL, container.name)].append(container)
    return [
        Service(name, min(group, key=lambda c: (len(c.name), c.name)), len(group))
        for name, group in sorted(groups.items())
    ]


def metadata(name: str, stack: str, labels: Mapping[str, str] = {}) -> Json:
    own, annotations = pods.user_labels(labels)
    found: Json = {"name": name, "labels": own | {NAME_LABEL: name, PART_OF_LABEL: stack}}
    if annotations:
        found["annotations"] = annotations
    return found


class Files:
    """The Secrets and ConfigMaps of the mounted files, one per name (a name given different
    contents by two services gets one object per service)."""

    def __init__(self) -> None:
        self.objects: dict[str, Json] = {}

    def add(self, service: Service, item: models.MountedFile) -> pods.FileSource:
        secret = isinstance(item, models.Secret)
        content = service.first.contents.get(item.path, b"")
        kind, volume_key = ("Secret", "secretName") if secret else ("ConfigMap", "name")
        data = _file_data(item.name, content, secret=secret)
        name = _object_name(item.name)
        taken = self.objects.get(f"{kind}/{name}")
        if taken is not None and {k: v for k, v in taken.items() if k in data} != data:
            name = _object_name(f"{service.name}-{item.name}")
        document = {"apiVersion": "v1", "kind": kind, "metadata": metadata(name, service.first.stack)} | data
        self.objects.setdefault(f"{kind}/{name}", document)
        return ("secret" if secret else "configMap", volume_key, name)


def _file_data(key: str, content: bytes, *, secret: bool) -> Json:
    if secret:
        return {"type": "Opaque", "data": {key: base64.b64encode(content).decode("ascii")}}
    try:
        return {"data": {key: content.decode("utf-8")}}
    except UnicodeDecodeError:
        return {"binaryData": {key: base64.b64encode(content).decode("ascii")}}


def _object_name(text: str) -> str:
    """A DNS subdomain for a Secret or ConfigMap: a file's name may hold capitals and '_'."""
    name = re.sub(r"[^a-z0-9.-]", "-", text.lower()).strip("-.")
    return name[:253] or "file"


def workload(service: Service, files: Files, notes: list[str]) -> Json:
    """The Deployment, StatefulSet or Job that runs the service's pods."""
    spec, name = service.spec, service.name
    template_spec = pods.pod_spec(name, spec, service.first.effective_env, lambda i: files.add(service, i), notes)
    labels = service.selector | {f"{NETWORK_LABEL}{n.name}": "true" for n in spec.networks}
    labels |= {f"{ALIAS_LABEL}{alias}": "true" for n in spec.networks for alias in n.aliases if alias != name}
    meta = metadata(name, service.first.stack, service.first.labels)
    template = {"metadata": {"labels": meta["labels"] | labels}, "spec": template_spec}
    policy = spec.restart.policy
    if spec.restart.backoff is not None:
        notes.append(f"Container {name}: spec.restart.backoff has no equivalent (the kubelet's back-off is fixed: "
                     "10s doubling to 5 minutes): left out")  # fmt: skip
    if policy in ("no", "on-failure"):
        return _job(service, meta, template, notes)
    owns_volume = any(isinstance(m, models.VolumeMount) for m in spec.mounts)
    body: Json = {"replicas": service.replicas, "selector": {"matchLabels": service.selector}, "template": template}
    ready = pods.seconds(spec.min_ready_seconds, f"Container {name}: spec.minReadySeconds", notes, least=0)
    body["minReadySeconds"] = ready
    if owns_volume:
        _rollout_notes(name, spec, "StatefulSet", notes)
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {"serviceName": name, **body}}
    body["strategy"] = _strategy(spec.strategy)
    # Kubernetes requires the deadline to be longer than minReadySeconds, in whole seconds.
    body["progressDeadlineSeconds"] = max(math.ceil(spec.ready_deadline), ready + 1)
    _rollout_notes(name, spec, "Deployment", notes)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def _strategy(strategy: str) -> Json:
    """One pod replaced at a time: the new one first (start-first), or the old one stopped first."""
    surge, unavailable = (1, 0) if strategy == "start-first" else (0, 1)
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def _rollout_notes(name: str, spec: models.ContainerSpec, kind: str, notes: list[str]) -> None:
    """What differs from a replacement here: Kubernetes stops a rollout that misses its deadline
    (the old pods that still run keep serving) but does not roll back; a StatefulSet has no
    deadline (and replaces its pods stop-first, as the planner replaces a volume's writer)."""
    where = f"Container {name}"
    if kind == "StatefulSet":
        # Its stop-first replacement is the planner's own rule for a container writing a named
        # volume (two writers on one volume must never overlap): strategy has nothing to add.
        if spec.progress_deadline is not None:
            notes.append(f"{where}: spec.progressDeadline has no equivalent for a StatefulSet: left out")
    elif spec.progress_deadline is not None or spec.strategy == "stop-first":
        notes.append(f"{where}: a rollout that misses progressDeadlineSeconds is marked failed, not rolled back "
                     f"(kubectl rollout undo deployment/{name})")  # fmt: skip


def _job(service: Service, meta: Json, template: Json, notes: list[str]) -> Json:
    """``restart: no`` and ``on-failure``: a Job, whose pods run to completion (a Deployment's
    would be restarted whenever they exit, which ``no`` must not do)."""
    restart = service.spec.restart
    template["spec"]["restartPolicy"] = "Never" if restart.policy == "no" else "OnFailure"
    spec: Json = {"parallelism": service.replicas, "completions": service.replicas, "template": template}
    if restart.policy == "no":
        spec["backoffLimit"] = 0
    elif restart.max_retries is not None:
        spec["backoffLimit"] = restart.max_retries
    else:
        notes.append(f"Container {service.name}: spec.restart on-failure without maxRetries retries for ever; "
                     "a Job gives up after its backoffLimit (6 by default): set maxRetries")  # fmt: skip
    rollout = manifests.to_document(service.spec, exclude_defaults=True)
    for field in ("strategy", "minReadySeconds", "progressDeadline"):
        if field in rollout:
            notes.append(f"Container {service.name}: spec.{field} has no equivalent for a Job (its pods are not "
                         "replaced by a rollout): left out")  # fmt: skip
    notes.append(f"Container {service.name}: restart {restart.policy} is rendered as a Job (it runs to "
                 "completion and is not started again); use restart: always for a long-running service")  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def name_services(service: Service, service_names: set[str], made: set[str], notes: list[str]) -> list[Json]:
    """Headless Services for the service's name and each alias: DNS answers its pods' addresses
    (every port, as Docker's embedded DNS). Services sharing an alias share its one Service."""
    found = []
    stack = service.first.stack
    wanted = [(service.name, service.selector)]
    for network in service.spec.networks:
        for alias in network.aliases:
            if alias in service_names and alias != service.name:
                notes.append(f"Container {service.name}: alias {alias} is also a container's name, and one "
                             "Service answers a name: that container's")  # fmt: skip
            elif alias != service.name:
                wanted.append((alias, {PART_OF_LABEL: stack, f"{ALIAS_LABEL}{alias}": "true"}))
    for name, selector in wanted:
        if name in made:
            continue
        made.add(name)
        if not _SERVICE_NAME.match(name):
            notes.append(f"Container {service.name}: the name {name} cannot be a Service's (it must start with a "
                         "letter): no Service answers it")  # fmt: skip
            continue
        spec = {"clusterIP": "None", "selector": selector}
        found.append({"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, stack), "spec": spec})
    return found


def _loopback(address: str | None) -> bool:
    return address is not None and ipaddress.ip_address(address).is_loopback


def published_service(service: Service, kind: str, notes: list[str]) -> list[Json]:
    """A LoadBalancer Service for the published ports, on their host ports."""
    ports = []
    for index, port in enumerate(service.spec.ports):
        where = f"Container {service.name}: spec.ports[{index}]"
        outside = port.host_port or port.container_port
        if port.mode == "host":
            continue  # a hostPort on the pod's node (see pods.container), as Swarm's mode: host
        if _loopback(port.host_ip):
            notes.append(f"{where}: hostIP {port.host_ip} has no equivalent (Kubernetes cannot publish on one "
                         "node's loopback): not published; reach it from this machine with kubectl port-forward "
                         f"{kind.lower()}/{service.name} {outside}:{port.container_port}")  # fmt: skip
            continue
        if port.host_ip is not None:
            notes.append(f"{where}: hostIP {port.host_ip} has no equivalent (a LoadBalancer takes every "
                         "address it is given): published on all")  # fmt: skip
        if service.replicas > 1 and port.host_port is not None:
            notes.append(f"{where}: a host port per replica becomes one port, {outside}, balanced over the "
                         f"{service.replicas} replicas")  # fmt: skip
        protocol = port.protocol.upper()
        ports.append({"name": f"{port.protocol}-{outside}", "port": outside, "targetPort": port.container_port,
                      "protocol": protocol})  # fmt: skip
    if not ports:
        return []
    name = f"{service.name}-published"
    spec = {"type": "LoadBalancer", "selector": service.selector, "ports": ports}
    return [{"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, service.first.stack), "spec": spec}]


def network_policies(desired: manifests.Desired, all_services: Sequence[Service], notes: list[str]) -> list[Json]:
    """A NetworkPolicy per network (its pods may reach each other), and one per service with
    published ports on a network (the world may reach those ports; a pod a policy selects takes
    only what some policy allows)."""
    found = []
    for name, network in sorted(desired.networks.items()):
        members = {"matchLabels": {f"{NETWORK_LABEL}{name}": "true"}}
        spec = {"podSelector": members, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": members}]}]}
        meta = metadata(pods.kubernetes_name(name), network.stack, network.labels)
        found.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
        for field in manifests.to_document(network.spec, exclude_defaults=True):
            notes.append(f"Network {name}: spec.{field} has no equivalent in Kubernetes (the cluster's network "
                         "plugin assigns addresses and routes; egress is not restricted): left out")  # fmt: skip
    for service in all_services:
        published = [p for p in service.spec.ports if not _loopback(p.host_ip)]
        if not (published and service.spec.networks):
            continue
        ports = [{"port": p.container_port, "protocol": p.protocol.upper()} for p in published]
        spec = {"podSelector": {"matchLabels": service.selector}, "policyTypes": ["Ingress"],
                "ingress": [{"ports": [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in ports)]}]}  # fmt: skip
        meta = metadata(f"{service.name}-published", service.first.stack)
        found.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
    for service in all_services:
        for attachment in service.spec.networks:
            if attachment.ipv4_address is not None:
                notes.append(f"Container {service.name}: networks {attachment.name} ipv4Address has no equivalent "
                             "(the network plugin assigns pod addresses): left out")  # fmt: skip
    return found


def claims(desired: manifests.Desired, all_services: Sequence[Service], notes: list[str]) -> list[Json]:
    """A PersistentVolumeClaim per Volume; ReadWriteMany where several pods mount it."""
    pods_of: collections.Counter[str] = collections.Counter()
    for service in all_services:
        for mount in service.spec.mounts:
            if isinstance(mount, models.VolumeMount):
                pods_of[mount.source] += service.replicas
    found = []
    for name, volume in sorted(desired.volumes.items()):
        mode = "ReadWriteMany" if pods_of[name] > 1 else "ReadWriteOnce"
        if pods_of[name] > 1:
            notes.append(f"Volume {name}: mounted by {pods_of[name]} pods: ReadWriteMany, which the cluster's "
                         "storage class must offer")  # fmt: skip
        notes.append(f"Volume {name}: a Volume has no size and a claim needs one: {DEFAULT_CLAIM_SIZE} requested "
                     "(edit spec.resources.requests.storage)")  # fmt: skip
        if volume.spec.options:
            notes.append(f"Volume {name}: spec.options has no equivalent (a StorageClass's parameters): left out")
        spec = {"accessModes": [mode], "resources": {"requests": {"storage": DEFAULT_CLAIM_SIZE}}}
        labels = {**volume.spec.labels, **volume.labels}
        meta = metadata(pods.kubernetes_name(name), volume.stack, labels)
        found.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec})
    return found


def render(desired: manifests.Desired) -> Rendering:
    """Every object of ``desired`` as Kubernetes objects, in an order ``kubectl apply`` can create
    them in (claims, Secrets and ConfigMaps, policies and Services before the pods that use them)."""
    notes: list[str] = []
    all_services = services(desired)
    files = Files()
    workloads = []
    names: list[Json] = []
    published: list[Json] = []
    service_names = {service.name for service in all_services}
    made: set[str] = set()
    for service in all_services:
        notes.extend(pods.unmapped(service.name, service.spec))
        workloads.append(workload(service, files, notes))
    for service, running in zip(all_services, workloads, strict=True):
        names += name_services(service, service_names, made, notes)
        published += published_service(service, running["kind"], notes)
    documents = [
        *claims(desired, all_services, notes),
        *(files.objects[key] for key in sorted(files.objects)),
        *network_policies(desired, all_services, notes),
        *names,
        *published,
        *workloads,
    ]
    # A copy through JSON: no two documents (or parts of one) share a dict, which YAML would
    # print as an anchor and an alias.
    return Rendering(json.loads(json.dumps(documents)), list(dict.fromkeys(notes)))
