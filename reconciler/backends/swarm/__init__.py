"""The Swarm backend: the ``Engine`` contract on a swarm manager, each container of the plan a member of a service.

Where it sits: beside the Docker backend, whose translation rules (mounts, health checks, errors,
log frames, events) and primitives on the manager itself (pulls, volumes, exec) it imports rather
than repeats. The CLI makes a :class:`SwarmEngine` (``--engine swarm``, the manager named by
``--docker-host`` or ``DOCKER_HOST``) and the executor calls its methods. The parts:

* ``engine``: :class:`SwarmEngine`, the primitives as service calls;
* ``service_specs``: a request as a ``ServiceSpec`` (the mapping, and what has no equivalent);
* ``service_states``: services and tasks as ``observed`` containers;
* ``members``: which containers of the plan a service stands for.

**A variant of the Engine contract, not a sibling.** Services are driven through the same
``Engine`` protocol because every rule above the engine holds for them unchanged: the planner's
decisions and their reasons, the spec hash, the owner labels, pruning, ``delete``, ``status`` and
the controller are the same code for every engine, and a sibling contract would have needed a
second planner, executor and status that would drift from the first. What differs is kept at
this boundary, where the contract's words get their Swarm meaning:

* **replicas**: the loader expands ``replicas: N`` into NAME-1 … NAME-N (labelled with their
  service), on every engine. Here they are the *members* of one service NAME, which runs as many
  tasks as it has started members: a scale from 3 to 4 is the plan's "create NAME-4" as on the
  other engines, and on Swarm one more replica of the one service. Doing it here, after the
  planner, keeps the plan, its reasons and the hashes identical across engines;
* **create / start / stop / remove** add a member, give it a task, take it away, drop it (the
  last one takes the service with it);
* **a replacement** (the planner's staged ``NAME.next``) is a change of the service's task
  template: Swarm's rolling update (one task at a time, start-first, ``failure_action:
  rollback`` watched for ``minReadySeconds``) replaces the tasks, and Swarm rolls back by itself
  when the new tasks fail: the start fails with Swarm's reason, and the old spec keeps running;
* **update in place** of resources is a service update too (Swarm replaces each task);
* **exec / stats** reach a task on the manager's node, or on a node labelled with its dockerd's
  address (``reconciler.docker-host``), which is also how ``remove_volume`` reaches the copies
  a volume has on other nodes; **events** are the manager node's tasks' (history adds the task
  list's word on the others); **logs** are the service's.

It must not import the executor, controller, CLI or another backend but the Docker one.
"""

from __future__ import annotations

from reconciler.backends.swarm import engine

SwarmEngine = engine.SwarmEngine

__all__ = ["SwarmEngine"]
