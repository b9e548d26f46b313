"""Compose's short syntaxes become the long manifest fields compose means."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.compose_helpers import convert, spec, write


def test_every_short_form(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "shop",
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            command: sh -c 'echo "a b" && sleep 1'
            entrypoint: /bin/entry --flag
            ports: ["8080:80", "127.0.0.1:9090:90/udp", "91", {target: 92, published: "9092", protocol: tcp}]
            volumes: ["data:/data", "./site:/www:ro", {type: tmpfs, target: /tmp, tmpfs: {size: 1048576}}]
            tmpfs: /run:size=64m,mode=1777
            environment: [A=1, B=x=y, C]
            labels: [tier=front]
            depends_on: [db]
            extra_hosts: ["gw=10.0.0.1", "other:10.0.0.2"]
            healthcheck: {test: "wget -q -O- http://localhost/", interval: 10s, start_period: 1s}
            dns: 1.1.1.1
            sysctls: [net.core.somaxconn=1024]
          db:
            image: busybox
            depends_on:
              cache: {condition: service_healthy}
          cache:
            image: busybox
            healthcheck: {disable: true}
        volumes:
          data:
        """,
    )
    documents = convert(compose)
    web = spec(documents, "shop-web-1")
    assert web["command"] == ["sh", "-c", 'echo "a b" && sleep 1']
    assert web["entrypoint"] == ["/bin/entry", "--flag"]
    assert web["ports"] == [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 90, "hostPort": 9090, "hostIP": "127.0.0.1", "protocol": "udp"},
        {"containerPort": 91},
        {"containerPort": 92, "hostPort": 9092},
    ]
    assert web["mounts"] == [
        {"type": "volume", "source": "shop_data", "target": "/data"},
        {"type": "bind", "source": str(tmp_path / "shop" / "site"), "target": "/www", "readOnly": True},
        {"type": "tmpfs", "target": "/tmp", "size": 1048576},
        {"type": "tmpfs", "target": "/run", "size": 64 * 1024 * 1024, "mode": 0o1777},
    ]
    assert web["env"] == {"A": "1", "B": "x=y"}  # C: unset in this process, so not set (as compose)
    assert documents["shop-web-1"]["metadata"]["labels"] == {"tier": "front"}
    assert web["dependsOn"] == [{"name": "shop-db-1"}]
    assert web["extraHosts"] == ["gw:10.0.0.1", "other:10.0.0.2"]
    assert web["healthcheck"] == {"test": ["CMD-SHELL", "wget -q -O- http://localhost/"], "interval": 10.0,
                                  "startPeriod": 1.0}  # fmt: skip
    assert web["dns"] == ["1.1.1.1"]
    assert web["sysctls"] == {"net.core.somaxconn": "1024"}
    assert web["networks"] == [{"name": "shop_default", "aliases": ["web"]}]
    assert spec(documents, "shop-db-1")["dependsOn"] == [{"name": "shop-cache-1", "condition": "healthy"}]
    assert spec(documents, "shop-cache-1")["healthcheck"]["test"] == ["NONE"]
    assert documents["shop_default"]["kind"] == "Network"
    assert documents["shop_data"]["kind"] == "Volume"


def test_names_replicas_and_networks(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "Any_Dir",
        "docker-compose.yml",
        """
        name: My_Shop
        services:
          api_v2:
            image: busybox
            deploy: {replicas: 3, resources: {limits: {memory: 64m, cpus: "0.5"}, reservations: {memory: 32m}},
                     restart_policy: {condition: on-failure, max_attempts: 4}}
            networks:
              back: {aliases: [api]}
          solo:
            image: busybox
            container_name: the-one
            network_mode: service:web
            ipc: host
          web:
            image: busybox
        networks:
          back: {driver: bridge, ipam: {config: [{subnet: 10.9.0.0/24, gateway: 10.9.0.1}]}, internal: true}
          unused: {}
        """,
    )
    documents = convert(compose)
    assert set(documents) == {"my_shop_back", "my_shop_default", "my-shop-api-v2", "the-one", "my-shop-web-1"}
    api = spec(documents, "my-shop-api-v2")
    assert api["replicas"] == 3
    assert api["resources"] == {"memory": 64 * 1024 * 1024, "cpus": 0.5}
    assert api["memoryReservation"] == 32 * 1024 * 1024
    assert api["restart"] == {"policy": "on-failure", "maxRetries": 4}
    assert api["networks"] == [{"name": "my_shop_back", "aliases": ["api-v2", "api"]}]
    assert documents["my_shop_back"]["spec"] == {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "internal": True}
    assert documents["my_shop_back"]["metadata"]["stack"] == "my-shop"
    solo = spec(documents, "the-one")
    assert solo["networkMode"] == "container:my-shop-web-1"
    assert solo["ipc"] == "host"


def test_project_name_from_option_then_directory(tmp_path: Path) -> None:
    compose = write(tmp_path / "shop", "compose.yaml", "services: {web: {image: busybox}}\n")
    assert set(convert(compose)) == {"shop_default", "shop-web-1"}
    assert set(convert(compose, project_name="other")) == {"other_default", "other-web-1"}


def test_profiles(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "p",
        "compose.yaml",
        """
        services:
          web: {image: busybox}
          debug: {image: busybox, profiles: [debug]}
        """,
    )
    assert "p-debug-1" not in convert(compose)
    assert "p-debug-1" in convert(compose, profiles=("debug",))


def test_secrets_configs_env_files(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    write(folder, "web.env", "A=1\n")
    write(folder, "token.txt", "secret\n")
    compose = write(
        folder,
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            env_file: [web.env, {path: missing.env, required: false}]
            secrets: [token, {source: token2, target: other, mode: 0400}]
            configs: [{source: conf, target: /etc/app.conf}]
        secrets:
          token: {file: ./token.txt}
          token2: {environment: HOME}
        configs:
          conf: {file: token.txt}
        """,
    )
    web = spec(convert(compose), "s-web-1")
    assert web["envFiles"] == [str(folder / "web.env")]
    assert web["secrets"] == [{"name": "token", "file": str(folder / "token.txt")},
                              {"name": "token2", "env": "HOME", "target": "other", "mode": 0o400}]  # fmt: skip
    assert web["configs"] == [{"name": "conf", "file": str(folder / "token.txt"), "target": "/etc/app.conf"}]


def test_anchors_merge_keys_and_extensions(tmp_path: Path) -> None:
    compose = write(
        tmp_path / "a",
        "compose.yaml",
        """
        x-base: &base
          image: busybox
          restart: unless-stopped
          environment: {A: "1"}
        services:
          one:
            <<: *base
            environment: {B: "2"}
            x-note: anything
          two: *base
        """,
    )
    documents = convert(compose)
    assert spec(documents, "a-one-1")["restart"] == {"policy": "unless-stopped"}
    assert spec(documents, "a-one-1")["env"] == {"B": "2"}  # the mapping's own key wins (YAML's rule)
    assert spec(documents, "a-two-1")["env"] == {"A": "1"}


def test_project_name_from_compose_project_name_in_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    write(tmp_path / "d", ".env", "COMPOSE_PROJECT_NAME=fromdotenv\n")
    compose = write(tmp_path / "d", "compose.yaml", "name: fromfile\nservices: {web: {image: busybox}}\n")
    assert "fromdotenv-web-1" in convert(compose)  # as compose: the variable wins over name:
