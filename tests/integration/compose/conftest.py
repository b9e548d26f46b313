"""Fixtures of the compose tests: the Docker suite's dockerd, registry and image, the native suite's
private root with busybox loaded.

They are the fixtures of ``tests/integration/docker`` and ``tests/integration/native``, imported
rather than copied: ``prefix`` is the Docker one (every container, network and volume named with
it is removed when the test ends), ``native_engine`` the native suite's ``engine`` (it removes what
the test left in its private root). The oracle tests of ``test_oracle`` need none of them.
"""

from __future__ import annotations

from tests.integration.docker.conftest import client, dockerd, image, prefix, registry
from tests.integration.native.conftest import engine as native_engine
from tests.integration.native.conftest import loaded, root

__all__ = ["client", "dockerd", "image", "loaded", "native_engine", "prefix", "registry", "root"]
