"""The three-service compose stack that both ``docker compose up`` and ``reconcile apply`` run.

db (a named volume, an env file, a health check, resource limits, a network alias), api (waits for
db to be healthy; two networks, working dir, user, an env file and inline variables) and web
(entrypoint and command lists, a published port, a relative read-only bind). The project is named
in the file (``name:``), so compose and reconcile name everything alike without options. This
module only writes files.
"""

from __future__ import annotations

from pathlib import Path

STACK = """\
name: {project}
x-image: &image {image}
services:
  db:
    image: *image
    command: ["sh", "-c", "echo ready > /data/state && exec sleep 3600"]
    env_file: [db.env]
    environment: {{ROLE: db}}
    volumes: ["data:/data"]
    networks:
      back: {{aliases: [database]}}
    healthcheck: {{test: "test -f /data/state", interval: 1s, timeout: 2s, retries: 30}}
    restart: always
    labels: {{tier: data}}
    deploy:
      resources:
        limits: {{memory: 64m, cpus: "0.5"}}
  api:
    image: *image
    command: sleep 3600
    env_file: [api.env]
    environment: ["DB_HOST=database"]
    depends_on:
      db: {{condition: service_healthy}}
    networks: [back, front]
    working_dir: /tmp
    user: "65534"
    restart: on-failure:3
  web:
    image: *image
    entrypoint: ["httpd", "-f"]
    command: ["-p", "8080", "-h", "/www"]
    ports: ["127.0.0.1:{port}:8080"]
    volumes: ["./site:/www:ro"]
    depends_on: [api]
    networks: [front]
    restart: unless-stopped
    stop_grace_period: 3s
networks:
  back: {{}}
  front: {{}}
volumes:
  data: {{}}
"""

SERVICES = ("db", "api", "web")
NETWORKS = ("back", "front")
VOLUMES = ("data",)
PAGE = "hello from the compose stack\n"


def write(folder: Path, *, project: str, image: str, port: int) -> Path:
    """The stack's folder (compose.yaml, its env files, the site); the compose file's path."""
    (folder / "site").mkdir(parents=True, exist_ok=True)
    (folder / "site" / "index.html").write_text(PAGE)
    (folder / "db.env").write_text("# the database's settings\nDB_NAME=shop\nDB_USER=shop\n")
    (folder / "api.env").write_text("LOG_LEVEL=info\nWORKERS=2\n")
    path = folder / "compose.yaml"
    path.write_text(STACK.format(project=project, image=image, port=port))
    return path
