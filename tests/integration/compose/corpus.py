"""The compose files the oracle tests write: valid ones (each a short syntax, an interpolation or a
merging rule, together every field the loader maps) and bad ones.

Each :class:`Case` is a folder of files (the compose file(s), ``.env``, env files, secret files)
and how it is loaded (:class:`tests.support.compose.Invocation`: ``-f`` files, ``-p``,
``--env-file``, ``--profile``, variables). The folder's name is the project name when neither
``name:`` nor ``-p`` gives one. :data:`GOOD` must load the same through compose and ``convert``;
:data:`INVALID` is refused by both; :data:`REFUSED` is valid compose that has no manifest
equivalent, so ``convert`` must refuse it at its place rather than drop it. This module only
holds data.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from tests.support.compose import Invocation

IMAGE = "busybox:1.36"


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]
    invocation: Invocation = field(default_factory=Invocation)
    folder: str = "app"
    # Bad cases: regular expressions that each must match one of convert's `file:line:col: ...` lines.
    says: tuple[str, ...] = ()


def compose(text: str, **others: str) -> dict[str, str]:
    """``compose.yaml`` with ``text`` (dedented), and other files by path (``dot_env`` is ``.env``)."""
    files = {"compose.yaml": textwrap.dedent(text).lstrip()}
    files.update({name.replace("dot_env", ".env"): textwrap.dedent(body).lstrip()
                  for name, body in others.items()})  # fmt: skip
    return files


def single(service: str, *, name: str = "") -> dict[str, str]:
    """A file with one service ``web`` whose body is ``service`` (YAML, indented by the caller's dedent)."""
    body = textwrap.indent(textwrap.dedent(service).strip(), "    ")
    return {"compose.yaml": f"services:\n  web:\n    image: {IMAGE}\n{body}\n" + (f"name: {name}\n" if name else "")}


# fmt: off
GOOD: list[Case] = [
    Case("minimal", compose(f"services:\n  web:\n    image: {IMAGE}\n")),
    Case("ports-short", single('ports: ["8080:80", "127.0.0.1:8081:81/udp", "82", "127.0.0.1::83", 84]')),
    Case("ports-ranges", single('ports: ["9000-9001:90-91", "127.0.0.1:9100-9101:100-101/udp"]')),
    Case("ports-host-range-replicas", single('ports: ["9200-9202:80"]\ndeploy: {replicas: 3}')),
    Case("ports-long", single("""
        ports:
          - {target: 80, published: "8080", host_ip: 127.0.0.1, protocol: tcp}
          - {target: 53, published: 5353, protocol: udp}
          - {target: 443}
        """)),
    Case("volumes-short", compose(f"""
        services:
          web:
            image: {IMAGE}
            volumes: ["data:/data", "data:/ro:ro", "./rel:/rel", "/srv/abs:/abs:ro", "./site/:/site:rw"]
        volumes:
          data: {{}}
        """)),
    Case("volumes-long", compose(f"""
        services:
          web:
            image: {IMAGE}
            volumes:
              - {{type: volume, source: data, target: /data, read_only: true}}
              - {{type: bind, source: ./conf, target: /etc/conf}}
              - {{type: tmpfs, target: /scratch, tmpfs: {{size: 16m, mode: 0o1777}}}}
        volumes:
          data: {{labels: {{backup: daily}}, driver_opts: {{type: tmpfs, device: tmpfs}}}}
        """)),
    Case("tmpfs-short", single('tmpfs: ["/run", "/cache:size=64m,mode=1777"]')),
    Case("tmpfs-string", single("tmpfs: /run")),
    Case("depends-on-list", compose(f"""
        services:
          web: {{image: {IMAGE}, depends_on: [api, db]}}
          api: {{image: {IMAGE}, depends_on: [db]}}
          db: {{image: {IMAGE}}}
        """)),
    Case("depends-on-map", compose(f"""
        services:
          web:
            image: {IMAGE}
            depends_on:
              api: {{condition: service_started}}
              db: {{condition: service_healthy}}
              init: {{condition: service_completed_successfully}}
          api: {{image: {IMAGE}}}
          db: {{image: {IMAGE}, healthcheck: {{test: "true"}}}}
          init: {{image: {IMAGE}, command: "true"}}
        """)),
    Case("healthcheck-string", single('healthcheck: {test: "wget -q -O /dev/null http://localhost/ || exit 1"}')),
    Case("healthcheck-list-durations", single("""
        healthcheck:
          test: [CMD, test, -f, /tmp/ready]
          interval: 1m30s
          timeout: 500ms
          retries: 5
          start_period: 2s
        """)),
    Case("healthcheck-cmd-shell-list", single('healthcheck: {test: [CMD-SHELL, "test -f /x"], interval: 5s}')),
    Case("healthcheck-disable", single("healthcheck: {disable: true}")),
    Case("command-string-quotes", single("""command: sh -c 'echo "a b" && exec sleep 3600'""")),
    Case("command-string-escapes", single(r'''command: "printf '%s\\n' one\\ two \"three four\""''')),
    Case("command-and-entrypoint-lists", single('entrypoint: ["/bin/sh", "-c"]\ncommand: ["exec sleep 3600"]')),
    Case("entrypoint-string", single("entrypoint: /bin/sh -c 'exec \"$$@\"' --\ncommand: [sleep, '3600']")),
    Case("environment-map", single("""
        environment:
          PLAIN: text
          NUMBER: 8080
          FLAG: true
          EMPTY: ""
          SPACES: "a b  c"
        """)),
    Case("environment-list-from-process", single('environment: ["A=1", "FROM_HOST", "NOT_SET", "B=x=y"]'),
         Invocation(environment={"FROM_HOST": "host value"})),
    Case("interpolation-braces-and-bare", compose('services:\n  web:\n    image: "busybox:${TAG}"\n    environment: {A: "$TAG", B: "x${TAG}y"}\n'),
         Invocation(environment={"TAG": "1.36"})),
    Case("interpolation-defaults", single("""
        environment:
          UNSET_COLON: "${NOPE:-fallback}"
          EMPTY_COLON: "${EMPTY:-fallback}"
          UNSET_DASH: "${NOPE-fallback}"
          EMPTY_DASH: "${EMPTY-fallback}"
          SET_COLON: "${SET:-fallback}"
        """), Invocation(environment={"EMPTY": "", "SET": "given"})),
    Case("interpolation-required-set", single('environment: {A: "${NEEDED:?set NEEDED first}", B: "${ALSO?x}"}'),
         Invocation(environment={"NEEDED": "here", "ALSO": ""})),
    Case("interpolation-alternative", single("""
        environment:
          SET_PLUS: "${SET:+replaced}"
          UNSET_PLUS: "${NOPE:+replaced}"
          EMPTY_PLUS: "${EMPTY:+replaced}"
          EMPTY_PLAIN_PLUS: "${EMPTY+replaced}"
        """), Invocation(environment={"SET": "x", "EMPTY": ""})),
    Case("interpolation-unset-is-empty", single('environment: {A: "${NOPE}", B: "x${NOPE}y"}')),
    Case("interpolation-dollar-escape", single('command: ["sh", "-c", "echo $$HOME $${PATH} costs $$5"]')),
    Case("interpolation-nested-default", single('environment: {A: "${NOPE:-${TAG:-deep}}"}'),
         Invocation(environment={"TAG": "inner"})),
    Case("dot-env", compose('services:\n  web:\n    image: "busybox:${TAG}"\n    environment: [\"GREETING=${GREETING}\"]\n',
                            dot_env="TAG=1.36\nGREETING=hello from .env\n")),
    Case("dot-env-process-wins", compose('services:\n  web:\n    image: busybox\n    environment: [\"A=${A}\", \"B=${B}\"]\n',
                                         dot_env="A=from file\nB=from file\n"),
         Invocation(environment={"A": "from process"})),
    Case("env-file-flag", compose('services:\n  web:\n    image: "busybox:${TAG}"\n    environment: [\"A=${A}\"]\n',
                                  **{"other.env": "TAG=1.36\nA=other\n", "dot_env": "TAG=wrong\nA=wrong\n"}),
         Invocation(env_files=("other.env",))),
    Case("env-file-service", compose(f"""
        services:
          web:
            image: {IMAGE}
            env_file: [common.env, {{path: local.env, required: false}}, {{path: present.env, required: false}}]
            environment: {{OVERRIDE: from environment}}
        """, **{"common.env": "# shared\nA=1\nOVERRIDE=from file\n", "present.env": "B=2\n"})),
    Case("env-file-string", single("env_file: app.env") | {"app.env": "X=1\nY=two words\n"}),
    # env file values are interpolated: the project's variables first (process over .env), then
    # the files before; single quotes literal, $$ a $, a KEY alone from the environment.
    Case("env-file-interpolated", compose(f"""
        services:
          web:
            image: {IMAGE}
            env_file: [one.env, two.env, {{path: bare.env, required: false}}]
            environment: {{OWN: "${{TAG}}", B: from environment}}
        """, **{"one.env": "A=${TAG}\nFOO=one\nB=${FOO}-b\nC='${TAG}'\nD=\"${TAG} x\"\nE=${NOPE:-dflt}\n"
                           "F=a$$b\nG=plain # comment\nH=\"quoted plain\"\nexport I=${FROM_PROCESS}\n",
                "two.env": "J=${A}/${FOO}\nFOO=two\nK=${UNSET_HERE}\n",
                "bare.env": "FROM_PROCESS\nNOT_SET_ANYWHERE\nL=${FOO}\n",
                "dot_env": "TAG=from-dot-env\nFOO=dot-foo\n"}),
         Invocation(environment={"FROM_PROCESS": "process value"})),
    Case("multiple-files-merged", compose(f"""
        services:
          web:
            image: {IMAGE}
            command: [sleep, "1"]
            environment: {{A: base, B: base}}
            ports: ["8080:80"]
            labels: {{tier: web}}
        """, **{"override.yaml": """
        services:
          web:
            image: busybox:1.37
            environment: {B: override, C: new}
            ports: ["8443:443"]
            labels: {extra: "yes"}
          api:
            image: busybox:1.36
        """}), Invocation(files=("compose.yaml", "override.yaml"))),
    Case("extends-same-file", compose(f"""
        services:
          base:
            image: {IMAGE}
            environment: {{A: base}}
            healthcheck: {{test: "true", interval: 10s}}
          web:
            extends: base
            environment: {{B: web}}
        """)),
    Case("extends-other-file", compose("""
        services:
          web:
            extends: {file: common.yaml, service: app}
            command: [sleep, "60"]
        """, **{"common.yaml": f"services:\n  app:\n    image: {IMAGE}\n    working_dir: /srv\n    user: nobody\n"})),
    Case("include", compose(f"""
        include: [db/compose.yaml]
        services:
          web: {{image: {IMAGE}, depends_on: [db]}}
        """, **{"db/compose.yaml": f"services:\n  db:\n    image: {IMAGE}\n    volumes: [./data:/data]\n"})),
    # An included project: its variables are the including project's over its own env files (the
    # .env of its project directory by default); its relative paths against its project directory.
    Case("include-project-directory-and-env-file", compose("""
        include:
          - sub/compose.yaml
          - path: [other/compose.yaml, other/override.yaml]
            project_directory: other/pd
            env_file: [other/vars.env]
        services:
          web: {image: "busybox:${TAG}", environment: {X: "${INC:-none}"}}
        """, **{
            "dot_env": "TAG=1.36\nPARENT_ONLY=p\n",
            "sub/compose.yaml": "services:\n  a:\n    image: busybox:${TAG}\n"
                                "    environment: {INC: '${INC:-unset}', P: '${PARENT_ONLY:-unset}'}\n"
                                "    volumes: ['./data:/data']\n    env_file: [a.env]\n",
            "sub/.env": "TAG=wrong\nINC=sub-inc\n", "sub/a.env": "AV=${INC}\n",
            "other/compose.yaml": "services:\n  b:\n    image: busybox:${TAG}\n    volumes: ['./data:/data']\n"
                                  "    env_file: [b.env]\n",
            "other/override.yaml": "services:\n  b:\n    environment: {INC: '${INC:-unset}'}\n",
            "other/vars.env": "TAG=wrong\nINC=${PARENT_ONLY}-other\n", "other/pd/b.env": "BV=${INC}\n",
            "other/pd/.env": "INC=not-read\n",
        })),
    Case("profiles-inactive", compose(f"""
        services:
          web: {{image: {IMAGE}}}
          debug: {{image: {IMAGE}, profiles: [debug]}}
        """)),
    Case("profiles-active", compose(f"""
        services:
          web: {{image: {IMAGE}}}
          debug: {{image: {IMAGE}, profiles: [debug]}}
          tools: {{image: {IMAGE}, profiles: [tools]}}
        """), Invocation(profiles=("debug",))),
    Case("profiles-from-environment", compose(f"""
        services:
          web: {{image: {IMAGE}}}
          debug: {{image: {IMAGE}, profiles: [debug]}}
        """), Invocation(environment={"COMPOSE_PROFILES": "debug"})),
    Case("x-extensions-and-anchors", compose(f"""
        x-env: &env
          LOG_LEVEL: info
        x-image: &image {IMAGE}
        services:
          web: {{image: *image, environment: *env, x-note: ignored}}
          api: {{image: *image, environment: *env}}
        """)),
    Case("yaml-merge-keys", compose(f"""
        x-common: &common
          image: {IMAGE}
          restart: unless-stopped
          labels: {{team: core}}
        services:
          web:
            <<: *common
            labels: {{team: web}}
          api:
            <<: *common
        """)),
    Case("deploy-replicas", single("deploy: {replicas: 3}")),
    Case("scale", single("scale: 2")),
    Case("deploy-resources", single("""
        deploy:
          resources:
            limits: {cpus: "0.5", memory: 128M, pids: 64}
            reservations: {memory: 64m}
        """)),
    Case("legacy-resources", single("mem_limit: 256m\ncpus: 1.5\npids_limit: 100\nmem_reservation: 32m\ncpu_shares: 512")),
    Case("deploy-restart-policy", single("deploy:\n  restart_policy: {condition: on-failure, max_attempts: 4, delay: 2s, window: 30s}")),
    Case("deploy-restart-any", single("deploy:\n  restart_policy: {condition: any}")),
    Case("restart-forms", compose(f"""
        services:
          a: {{image: {IMAGE}, restart: always}}
          b: {{image: {IMAGE}, restart: "on-failure:3"}}
          c: {{image: {IMAGE}, restart: unless-stopped}}
          d: {{image: {IMAGE}, restart: "no"}}
          e: {{image: {IMAGE}, restart: on-failure}}
        """)),
    Case("secrets-files", compose(f"""
        services:
          web:
            image: {IMAGE}
            secrets:
              - db_password
              - {{source: api_key, target: /etc/api.key, uid: "1000", gid: "1000", mode: 0400}}
              - {{source: token, target: token.txt}}
        secrets:
          db_password: {{file: ./secrets/db.txt}}
          api_key: {{file: api.key}}
          token: {{environment: TOKEN}}
        """, **{"secrets/db.txt": "hunter2\n", "api.key": "k\n"}), Invocation(environment={"TOKEN": "t0k"})),
    Case("configs-files", compose(f"""
        services:
          web:
            image: {IMAGE}
            configs:
              - site
              - {{source: nginx, target: /etc/nginx.conf, mode: 0440}}
        configs:
          site: {{file: ./site.conf}}
          nginx: {{file: nginx.conf}}
        """, **{"site.conf": "a=1\n", "nginx.conf": "events {}\n"})),
    Case("relative-binds", single('volumes: ["./:/app", "../shared:/shared:ro", "./a/../b:/b"]')),
    Case("container-name", single("container_name: my-web")),
    Case("project-name-key", single("", name="shop")),
    Case("project-name-flag", single(""), Invocation(project="flagged")),
    Case("project-name-flag-over-key", single("", name="shop"), Invocation(project="flag-wins")),
    Case("project-name-directory", single(""), folder="My_Shop.2"),
    Case("project-name-env", single(""), Invocation(environment={"COMPOSE_PROJECT_NAME": "fromenv"})),
    Case("default-network-aliases", compose(f"""
        services:
          web: {{image: {IMAGE}}}
          api: {{image: {IMAGE}}}
        """)),
    Case("networks-custom", compose(f"""
        services:
          web:
            image: {IMAGE}
            networks:
              front: {{aliases: [www, site]}}
              back:
          db:
            image: {IMAGE}
            networks:
              back: {{ipv4_address: 10.231.9.10, aliases: [database]}}
        networks:
          front: {{labels: {{zone: dmz}}}}
          back:
            internal: true
            driver_opts: {{com.docker.network.bridge.name: br-app-back}}
            ipam: {{config: [{{subnet: 10.231.9.0/24, gateway: 10.231.9.1}}]}}
        """)),
    Case("networks-list-and-named", compose(f"""
        services:
          web: {{image: {IMAGE}, networks: [front, default]}}
        networks:
          front: {{name: app-front}}
        """)),
    Case("external-network-and-volume", compose(f"""
        services:
          web:
            image: {IMAGE}
            networks: [shared]
            volumes: ["cache:/cache"]
        networks:
          shared: {{external: true, name: shared-net}}
        volumes:
          cache: {{external: true}}
        """)),
    Case("network-mode", compose(f"""
        services:
          web: {{image: {IMAGE}, network_mode: host}}
          worker: {{image: {IMAGE}, network_mode: none}}
          side: {{image: {IMAGE}, network_mode: "service:api"}}
          api: {{image: {IMAGE}}}
        """)),
    Case("labels-map-and-list", compose(f"""
        services:
          web: {{image: {IMAGE}, labels: {{a: "1", b: two}}}}
          api: {{image: {IMAGE}, labels: ["c=3", "d=four"]}}
        """)),
    Case("logging", single("logging:\n  driver: json-file\n  options: {max-size: 10m, max-file: '3'}")),
    Case("stop-signal-and-grace", single("stop_signal: SIGINT\nstop_grace_period: 1m30s")),
    Case("knobs", single("""
        working_dir: /srv
        user: "1000:1000"
        hostname: web
        domainname: example.test
        read_only: true
        cap_add: [NET_ADMIN]
        cap_drop: [ALL]
        init: true
        ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 512}
        shm_size: 128m
        sysctls: [net.core.somaxconn=1024]
        security_opt: [no-new-privileges]
        dns: 10.0.0.53
        dns_search: [example.test]
        dns_opt: ["ndots:2"]
        extra_hosts: ["db.local:10.0.0.5", "gw=host-gateway"]
        group_add: [audio]
        oom_score_adj: 100
        cpuset: "0"
        """)),
    Case("privileged-ipc-pid", compose(f"""
        services:
          web: {{image: {IMAGE}, privileged: true, pid: host, ipc: shareable}}
          api: {{image: {IMAGE}, ipc: "service:web"}}
        """)),
    Case("pull-policy", compose(f"""
        services:
          a: {{image: {IMAGE}, pull_policy: always}}
          b: {{image: {IMAGE}, pull_policy: never}}
          c: {{image: {IMAGE}, pull_policy: missing}}
        """)),
    Case("volumes-from", compose(f"""
        services:
          data: {{image: {IMAGE}, volumes: ["store:/store"]}}
          web: {{image: {IMAGE}, volumes_from: [data]}}
        volumes:
          store: {{}}
        """)),
    Case("build-with-image", single("build: .")),
    # An anonymous volume is a Volume of the stack, <project>_<service>-<hash of its target>.
    Case("anonymous-volumes", compose(f"""
        services:
          web: {{image: {IMAGE}, volumes: ["/data", {{type: volume, target: /cache, read_only: true}}]}}
          side: {{image: {IMAGE}, volumes_from: [web], volumes: ["/data"]}}
        """)),
    # compose names the first replica where one container is needed (network_mode, ipc, volumes_from).
    Case("service-mode-of-a-replicated-service", compose(f"""
        services:
          web: {{image: {IMAGE}, deploy: {{replicas: 2}}, volumes: ["store:/store"]}}
          side: {{image: {IMAGE}, network_mode: "service:web", ipc: "service:web", volumes_from: [web]}}
        volumes:
          store: {{}}
        """)),
    # Rollouts and placement: update_config's order and monitor are the manifest's strategy and
    # minReadySeconds; failure_action rollback and max_failure_ratio 0 are what every replacement does.
    Case("deploy-update-config", compose(f"""
        services:
          web:
            image: {IMAGE}
            deploy: {{update_config: {{order: stop-first, monitor: 1m30s, failure_action: rollback, max_failure_ratio: 0}}}}
          api:
            image: {IMAGE}
            deploy: {{update_config: {{order: start-first, monitor: 500ms}}, replicas: 2}}
        """)),
    Case("deploy-placement", single("deploy:\n  placement: {constraints: [node.role==worker, 'node.labels.disk == ssd']}")),
    Case("ports-long-mode", single("""
        ports:
          - {target: 80, published: "8080", mode: host}
          - {target: 81, published: 8081, mode: ingress, protocol: udp}
          - "8082:82"
        """)),
    Case("uppercase-and-underscores", compose(f"services:\n  api_v2:\n    image: {IMAGE}\n  Web.Front:\n    image: {IMAGE}\n")),
]
# fmt: on

# Refused by compose and by convert (file:line:col, no traceback).
INVALID: list[Case] = [
    Case("yaml-syntax", {"compose.yaml": "services:\n  web:\n    image: [busybox\n"}, says=(r"compose\.yaml:\d+:\d+",)),
    Case("unknown-top-level", compose(f"services:\n  web: {{image: {IMAGE}}}\nservice: {{}}\n"), says=("service",)),
    Case("unknown-service-field", single("imagee: busybox"), says=("imagee",)),
    Case("required-variable-unset", single('environment: {A: "${NEEDED:?set NEEDED first}"}'), says=("NEEDED",)),
    Case(
        "required-variable-unset-plain",
        compose('services:\n  web:\n    image: "busybox:${TAG?no tag}"\n'),
        says=("TAG",),
    ),
    Case("bad-interpolation", single('environment: {A: "${A"}'), says=(r"environment|\$\{",)),
    Case("bad-port", single('ports: ["80:http"]'), says=("ports",)),
    Case("depends-on-undefined", single("depends_on: [ghost]"), says=("ghost",)),
    Case("undefined-volume", single('volumes: ["ghost:/data"]'), says=("ghost",)),
    Case("undefined-network", single("networks: [ghost]"), says=("ghost",)),
    Case("undefined-secret", single("secrets: [ghost]"), says=("ghost",)),
    Case("bad-duration", single('healthcheck: {test: "true", interval: "10 parsecs"}'), says=("interval",)),
    Case("env-file-missing", single("env_file: [missing.env]"), says=("missing.env",)),
    Case("extends-missing-service", single("extends: ghost"), says=("ghost",)),
    Case("services-not-a-map", {"compose.yaml": "services: [web]\n"}, says=("services",)),
    Case("update-config-bad-order", single("deploy: {update_config: {order: sideways}}"), says=("order",)),
    Case("update-config-null", single("deploy: {update_config: null}"), says=("update_config",)),
    Case("update-config-monitor-number", single("deploy: {update_config: {monitor: 10}}"), says=("monitor",)),
    Case("update-config-monitor-not-duration", single("deploy: {update_config: {monitor: soon}}"), says=("monitor",)),
    Case(
        "placement-constraints-string",
        single("deploy: {placement: {constraints: node.role==worker}}"),
        says=("constraints",),
    ),
    Case(
        "dependency-cycle",
        compose(f"""
        services:
          a: {{image: {IMAGE}, depends_on: [b]}}
          b: {{image: {IMAGE}, depends_on: [a]}}
        """),
        says=("cycle|depends",),
    ),
]

# Valid compose that has no manifest equivalent: convert refuses it at its place (never drops it).
REFUSED: list[Case] = [
    Case("build-without-image", {"compose.yaml": "services:\n  web:\n    build: .\n"}, says=("build",)),
    Case("expose", single('expose: ["80"]'), says=("expose",)),
    Case("anonymous-volume-of-replicas", single('volumes: ["/data"]\ndeploy: {replicas: 2}'), says=("volumes",)),
    Case("tty", single("tty: true"), says=("tty",)),
    Case(
        "overlay-network",
        compose(f"""
        services:
          web: {{image: {IMAGE}, networks: [mesh]}}
        networks:
          mesh: {{driver: overlay}}
        """),
        says=("driver",),
    ),
    Case("syslog-logging", single("logging: {driver: syslog}"), says=("logging",)),
    Case("two-problems-at-once", single("tty: true\nstdin_open: true"), says=("tty", "stdin_open")),
    Case(
        "update-config-swarm-only",
        single("deploy: {update_config: {parallelism: 2, delay: 10s, failure_action: pause, max_failure_ratio: 0.5}}"),
        says=("parallelism", "delay", "failure_action", "max_failure_ratio"),
    ),
    Case("rollback-config", single("deploy: {rollback_config: {parallelism: 0}}"), says=("rollback_config",)),
    Case(
        "placement-preferences",
        single("deploy: {placement: {constraints: [node.role==worker], preferences: [{spread: node.labels.zone}]}}"),
        says=("preferences",),
    ),
    Case("deploy-mode-global", single("deploy: {mode: global}"), says=("mode",)),
    Case("port-mode-unknown", single("ports: [{target: 80, mode: sideways}]"), says=("mode",)),
]
