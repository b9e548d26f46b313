"""The Docker backend: the ``Engine`` contract on a real dockerd, through the docker SDK for Python.

Where it sits: the CLI makes a :class:`DockerEngine` (``DockerEngine.from_env()``) and the
executor calls its methods, each one idempotent primitive of ``reconciler.engine``. The parts:

* ``engine``: :class:`DockerEngine`, the primitives as Engine API calls;
* ``configs``: a request as the Engine API's create/update bodies (how the manifest maps onto
  Docker: restart policies, resources, mounts, ports, networks);
* ``reading``: Docker's answers (inspects, list entries, log lines, events) as ``observed`` and
  ``engine`` values;
* ``informer``: the container list and inspects kept between observes while events flow;
* ``stack_networks``: each stack's own network for containers that name none;
* ``streams``: multiplexed log responses and event streams;
* ``translating``: library errors as the project's errors.

The docker SDK (and requests, which it uses) is imported inside this package only. It must not
import the planner, executor, controller, CLI or another backend.
"""

from __future__ import annotations

from reconciler.backends.docker import engine

# The one name the rest of the project uses: ``docker_backend.DockerEngine.from_env()``.
# (``stack_networks`` is imported where a container is made: it needs the SDK, a no-op does not.)
DockerEngine = engine.DockerEngine

__all__ = ["DockerEngine", "engine"]
