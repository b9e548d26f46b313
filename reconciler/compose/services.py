"""One compose service as the spec of a manifest Container document, field by field.

Sits above :mod:`.translating` (the documents, names and places it writes with) and under
:mod:`.loader`. Each field of a service has a handler in :data:`HANDLERS`, is renamed as it is
(:data:`translating.RENAMED`), or is refused with its reason; ``x-`` fields are extensions and
carry nothing. It reads only the env files a service names (compose interpolates their values);
no other file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.compose import attachments, deploy, interpolation, shorthands, translating
from reconciler.compose.located import Located
from reconciler.compose.translating import Context, ServiceDocument, Translation

Handler = Callable[[Context, ServiceDocument, object], None]


def translate(project: translating.Project, merged: Located) -> Translation:
    """Every document of the project, with the problems found translating it."""
    context, active = translating.begin(project, merged)
    for name, spec in active.items():
        service(context, name, spec)
    # Networks, volumes (the anonymous ones of services too), then containers.
    context.out.documents.sort(key=lambda document: _KIND_ORDER.get(str(document.value.get("kind")), 3))
    return context.out


_KIND_ORDER = {"Network": 0, "Volume": 1, "Container": 2}


def service(context: Context, name: str, spec: dict[str, object]) -> None:
    current = context.service_document(name)
    if "image" not in spec and "build" not in spec:
        context.refuse(current.path, current.path, f"service {name} has neither image nor build: name an image")
    for field, value in spec.items():
        here = (*current.path, field)
        if field.startswith("x-") or field in _ACCEPTED:
            continue
        if field in translating.RENAMED and field not in ("mem_reservation", "shm_size"):
            current.put(context, ("spec", translating.RENAMED[field]), value, field)
        elif field in translating.RESOURCES:
            amount = shorthands.size(value) if field == "mem_limit" else value
            current.put(context, ("spec", "resources", translating.RESOURCES[field]), amount, field)
        elif field in ("mem_reservation", "shm_size"):
            current.put(context, ("spec", translating.RENAMED[field]), shorthands.size(value), field)
        elif field in HANDLERS:
            HANDLERS[field](context, current, value)
        elif field in translating.REFUSED:
            context.refuse(here, here, f"`{field}` is not supported: {translating.REFUSED[field]}")
        else:
            context.refuse(here, here, f"`{field}` has no manifest field here; remove it")
    attachments.attach_networks(context, current, spec)
    deploy.replicas(context, current, spec)


_ACCEPTED = frozenset({"container_name", "profiles", "scale", "extends"})


def _build(context: Context, current: ServiceDocument, value: object) -> None:
    here = (*current.path, "build")
    spec = context.merged.value["services"][current.name]  # type: ignore[index]
    if "image" in spec:
        context.refuse(here, here, "this project does not build images: the image named in image: is used",
                       warning=True)  # fmt: skip
    else:
        context.refuse(here, here, translating.NO_BUILD)
        # Refused once, for that; the rest of the service is still checked, with a stand-in image.
        current.document.spec["image"] = "build-refused"


def _pull_policy(context: Context, current: ServiceDocument, value: object) -> None:
    policy = translating.PULL.get(str(value))
    if policy is None:
        here = (*current.path, "pull_policy")
        context.refuse(here, here, f"pull_policy {value!r}: always, never, missing or if_not_present")
        return
    current.put(context, ("spec", "pullPolicy"), policy, "pull_policy")


def _environment(context: Context, current: ServiceDocument, value: object) -> None:
    if not isinstance(value, dict):
        current.put(context, ("spec", "env"), value, "environment")
        return
    # Over the values env files gave (:func:`_env_file`, whichever field comes first).
    found = current.document.spec.get("env")
    env = dict(found) if isinstance(found, dict) else {}
    for key, item in value.items():
        text = translating.environment_value(str(key), item, context.project.environment)
        if text is not None:
            env[str(key)] = text
    current.put(context, ("spec", "env"), env, "environment")


def _env_file(context: Context, current: ServiceDocument, value: object) -> None:
    """Each env file read as compose reads it (interpolated with the project's variables, then those
    of the files before it). The files stay in ``envFiles`` (their edits are watched); a value that
    differs from its text there (a variable, an escape, a comment) goes into ``env`` too, under the
    service's ``environment``; a file with a ``KEY`` line alone, which manifests do not read, is
    given whole in ``env``."""
    files: list[str] = []
    values: dict[str, str] = {}
    overrides: dict[str, str | None] = {}
    for index, item in enumerate(value if isinstance(value, list) else []):
        path = item.get("path") if isinstance(item, dict) else None
        here = (*current.path, "env_file", index)
        if not isinstance(path, str) or set(item) - {"path", "required"}:
            context.refuse(here, here, "env_file: a path, or {path, required} (the format option is not supported)")
            continue
        absolute = translating.absolute(context.project.directory, path)
        if item.get("required", True) is False and not translating.exists(absolute):
            continue
        entries = _env_entries(context, current, here, absolute, values)
        whole = any(entry.bare for entry in entries)
        for entry in entries:
            if entry.value is not None:
                values[entry.key] = entry.value
            overrides[entry.key] = entry.value if whole or not entry.literal else None
        if entries and not whole:
            current.put(context, ("spec", "envFiles", len(files)), absolute, ("env_file", index))
            files.append(absolute)
    current.document.spec["envFiles"] = files
    env = {key: text for key, text in overrides.items() if text is not None}
    if env:
        own = current.document.spec.get("env")
        current.put(context, ("spec", "env"), {**env, **(own if isinstance(own, dict) else {})}, "env_file")


def _env_entries(
    context: Context, current: ServiceDocument, here: tuple[str | int, ...], path: str, before: dict[str, str]
) -> list[interpolation.EnvEntry]:
    variables = {**before, **context.project.included.get(current.name, context.project.environment)}

    def say(message: str) -> None:
        context.refuse(here, here, message, warning=True)

    try:
        return interpolation.env_file_entries(Path(path), variables, say)
    except OSError as exc:
        context.refuse(here, here, f"cannot read {path}: {exc.strerror or exc}")
    except ValueError as exc:  # UnicodeDecodeError too
        context.refuse(here, here, str(exc) if not isinstance(exc, UnicodeDecodeError) else f"{path}: not UTF-8 text")
    return []


def _labels(context: Context, current: ServiceDocument, value: object) -> None:
    labels = {str(k): "" if v is None else str(v) for k, v in value.items()} if isinstance(value, dict) else value
    current.put(context, ("metadata", "labels"), labels, "labels")


def _restart(context: Context, current: ServiceDocument, value: object) -> None:
    current.put(context, ("spec", "restart"), value, "restart")


def _healthcheck(context: Context, current: ServiceDocument, value: object) -> None:
    if not isinstance(value, dict):
        current.put(context, ("spec", "healthcheck"), value, "healthcheck")
        return
    check: dict[str, object] = {}
    names = {"test": "test", "interval": "interval", "timeout": "timeout", "retries": "retries",
             "start_period": "startPeriod"}  # fmt: skip
    for field, item in value.items():
        here = (*current.path, "healthcheck", field)
        if field in names:
            check[names[field]] = item
            current.document.places.append((("spec", "healthcheck", names[field]), here, context.merged.at(here)))
        elif field == "disable":
            if item:
                check["test"] = ["NONE"]
        elif not field.startswith("x-"):
            context.refuse(here, here, f"healthcheck.{field} has no manifest field here")
    if "test" not in check:
        here = (*current.path, "healthcheck")
        context.refuse(here, here, "a healthcheck without test (the image's, with other timings) has no manifest "
                       "form: write its test, or disable: true")  # fmt: skip
        return
    current.put(context, ("spec", "healthcheck"), check, "healthcheck")


def _depends_on(context: Context, current: ServiceDocument, value: object) -> None:
    dependencies: list[dict[str, object]] = []
    for other, written in value.items() if isinstance(value, dict) else []:
        here = (*current.path, "depends_on", other)
        options = written if isinstance(written, dict) else {}
        condition = translating.CONDITIONS.get(str(options.get("condition", "service_started")))
        if condition is None:
            context.refuse(here, (*here, "condition"), "condition: service_started, service_healthy or "
                           "service_completed_successfully")  # fmt: skip
        for option in options:
            if option == "restart" and options[option]:
                context.refuse(here, (*here, option), "restart: true (restart with the dependency) is not supported")
            elif option == "required" and options[option] is False:
                context.refuse(here, (*here, option), "required: false is not supported: every dependency is required")
            elif option not in ("condition", "restart", "required") and not option.startswith("x-"):
                context.refuse(here, (*here, option), f"depends_on: `{option}` has no manifest field here")
        if other not in context.names:
            context.refuse(here, here, f"depends on {other!r}, which is not an active service of the project")
            continue
        dependencies.append({"name": context.names[other], "condition": condition or "started"})
        current.document.places.append((("spec", "dependsOn", len(dependencies) - 1), here, context.merged.at(here)))
    current.put(context, ("spec", "dependsOn"), dependencies, "depends_on")


HANDLERS: dict[str, Handler] = {
    "build": _build,
    "pull_policy": _pull_policy,
    "environment": _environment,
    "env_file": _env_file,
    "labels": _labels,
    "restart": _restart,
    "healthcheck": _healthcheck,
    "depends_on": _depends_on,
    "deploy": deploy.deploy,
    **attachments.HANDLERS,
}
