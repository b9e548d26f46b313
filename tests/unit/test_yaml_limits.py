"""A manifest cannot take the process down: alias bombs, recursive aliases, deep nesting and huge
files are positioned errors (issue 10, finding 12), through the CLI and the watched folder alike,
with libyaml's parser and with PyYAML's pure-Python one.

Nothing here measures time: memory is bounded (tracemalloc's peak) and the error is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml

from reconciler import cli, errors, manifests
from reconciler.manifests import positions
from tests.unit.controller_support import Harness, container_yaml

# 359 bytes that expand to 10⁹ strings.
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
RECURSIVE = "apiVersion: reconciler/v1\nkind: Container\nmetadata: &m {name: web, labels: *m}\n"
DEEP = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
PARSERS = [pytest.param(getattr(yaml, "CSafeLoader", None), id="libyaml"), pytest.param(yaml.SafeLoader, id="python")]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param is None:
        pytest.fail("PyYAML is built without libyaml (yaml.CSafeLoader missing): the libyaml path is untested")
    monkeypatch.setattr(positions, "_PARSER", request.param)


def problems(text: str, file: str = "bomb.yaml") -> list[str]:
    found: list[errors.Diagnostic] = []
    assert list(positions.documents(text, file, found)) == []
    return [d.render() for d in found]


@pytest.mark.usefixtures("parser")
def test_billion_laughs_is_a_positioned_error_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        found = problems(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(found) == 1 and found[0].startswith("bomb.yaml:"), found
    assert "expands to more than 100000 values" in found[0]
    line = int(found[0].split(":")[1])
    assert 2 <= line <= 9  # at an alias of the bomb, not at 1:1
    assert peak < 50 * 1024 * 1024, peak


@pytest.mark.usefixtures("parser")
def test_a_recursive_alias_is_an_error_at_the_alias() -> None:
    assert problems(RECURSIVE) == ["bomb.yaml:3:34: YAML error: alias *m is recursive: it is inside the value it names"]
    assert problems("&s [*s]\n")[0].startswith("bomb.yaml:1:5: YAML error: alias *s is recursive")


@pytest.mark.usefixtures("parser")
def test_deep_nesting_is_refused_before_the_parser_slows_down() -> None:
    found = problems(DEEP)
    assert found == [f"bomb.yaml:1:{3 + positions.MAX_DEPTH}: YAML error: values nest deeper than 100 levels"]
    # Aliases cannot stack depth either: each level repeats the previous one 60 levels deeper.
    stacked = (
        "a: &a "
        + "[" * 60
        + "]" * 60
        + "\n"
        + "".join(f"{c}: &{c} " + "[" * 59 + f"*{p}" + "]" * 59 + "\n" for p, c in zip("ab", "bc", strict=True))
    )
    assert "values nest deeper than 100 levels" in problems(stacked)[0]


@pytest.mark.usefixtures("parser")
def test_anchors_and_aliases_within_the_limits_still_work() -> None:
    text = (
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web, labels: &l {a: b}}\n"
        "spec: {image: busybox, env: *l}\n"
    )
    assert manifests.load_text(text).containers["web"].spec.env == {"a": "b"}


def test_a_file_beyond_the_size_limit_is_refused() -> None:
    big = "# padding\n" * (positions.MAX_TEXT_BYTES // 10 + 1)
    assert problems(big) == ["bomb.yaml:1:1: YAML error: the text is larger than 4 MiB, the most a manifest may be"]


@pytest.mark.parametrize("text", [BILLION_LAUGHS, RECURSIVE, DEEP], ids=["billion-laughs", "recursive", "deep"])
def test_reconcile_validate_reports_it(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    assert cli.main(["validate", "-f", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert f"{bomb}:" in err and "YAML error" in err and "Traceback" not in err, err


def test_a_deep_text_does_not_crash_the_cli_process(tmp_path: Path) -> None:
    """libyaml's composer recursed in C: a 200 kB text killed the process with SIGSEGV."""
    bomb = tmp_path / "deep.yaml"
    bomb.write_text(DEEP)
    run = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "-f", str(bomb)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 1 and "values nest deeper than 100 levels" in run.stderr, (run.returncode, run.stderr)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, RECURSIVE], ids=["billion-laughs", "recursive"])
def test_the_watched_folder_reports_it_and_keeps_the_rest(text: str, tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("web"))
    harness.write("bomb.yaml", text)
    harness.settle()
    assert harness.engine.containers["web"].state == "running"
    files = {Path(f["path"]).name: f for f in harness.controller.status()["files"]}
    assert files["bomb.yaml"]["state"] == "error"
    assert files["bomb.yaml"]["errors"][0].startswith(f"{tmp_path / 'bomb.yaml'}:"), files["bomb.yaml"]
    assert "YAML error" in files["bomb.yaml"]["errors"][0]
