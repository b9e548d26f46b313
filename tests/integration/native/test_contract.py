"""The native engine runs the engine contract suite, except bridge networks (not built yet)."""

from __future__ import annotations

import pytest

from reconciler import errors, manifests, plans
from reconciler.backends.native import engine as native_engine
from tests.contract import suite


class TestNativeEngine(suite.EngineContract):
    # Bridge networking is the next step of the native engine. Until then these contract tests
    # are replaced by one that proves the engine refuses clearly instead of pretending.
    def test_network_create_is_idempotent_and_labels_round_trip(
        self, engine: native_engine.NativeEngine, prefix: str
    ) -> None:  # type: ignore[override]
        self._refuses_networks(engine, prefix)

    def test_network_owned_by_another_stack_conflicts(self, engine: native_engine.NativeEngine, prefix: str) -> None:  # type: ignore[override]
        self._refuses_networks(engine, prefix)

    def test_create_with_missing_network_is_not_found(
        self, engine: native_engine.NativeEngine, image: str, prefix: str
    ) -> None:  # type: ignore[override]
        engine.pull_image(image)
        with pytest.raises(errors.RuntimeFailed, match="bridge networking .* is not built"):
            engine.create_container(
                suite.container_request(f"{prefix}c5", image, networks=[{"name": f"{prefix}nonet"}])
            )

    @staticmethod
    def _refuses_networks(engine: native_engine.NativeEngine, prefix: str) -> None:
        request = plans.NetworkRequest(f"{prefix}net", manifests.NetworkSpec(), suite.labels("contract", "Network"))
        with pytest.raises(errors.RuntimeFailed, match="cannot create network .* bridge networking"):
            engine.create_network(request)
        assert engine.observe().networks == {}
