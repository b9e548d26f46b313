"""``reconcile render --to kubernetes -f PATH... [-o FILE]``: the manifests as another system's objects.

Where it sits: a command module of ``reconciler.cli``. It loads the manifests (compose files too),
hands them to the renderer (:mod:`reconciler.render.kubernetes`, imported inside the command: the
CLI's start stays light) and writes the multi-document YAML ``kubectl apply -f`` takes, to stdout or to ``-o FILE``
(written atomically, mode 0600: it holds the secrets). Every message of the renderer (a field
with no equivalent) goes to stderr as ``warning: ...``; the output itself is never logged.

It must not import the models, the renderer or YAML at module level, nor an engine.
"""

from __future__ import annotations

import argparse

from reconciler.cli import console, options

TARGETS = ("kubernetes",)


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "render",
        cmd_render,
        "print the manifests as Kubernetes objects, for kubectl apply (no engine is used)",
        example="reconcile render --to kubernetes -f stack.yaml -o stack.k8s.yaml",
        parents=common,
    )
    p.add_argument("--to", choices=TARGETS, required=True, help="the system to render for")
    options.add_files(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (mode 0600) instead of stdout")


def cmd_render(args: argparse.Namespace) -> int:
    from reconciler import files, manifests
    from reconciler.render import kubernetes

    rendering = kubernetes.render(options.load_files(args))
    for message in rendering.messages:
        console.warn(message)
    if rendering.secrets:
        console.warn(f"the output holds {rendering.secrets} Secret(s) with their content, base64-encoded (no "
                     "encryption): keep it out of logs and version control, and pipe it to kubectl")  # fmt: skip
    text = manifests.yaml_text(rendering.documents)
    if args.output:
        files.write_atomic(args.output, text.encode("utf-8"))
    else:
        console.out(text.rstrip())
    return console.EXIT_OK
