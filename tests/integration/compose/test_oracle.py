"""compose v2 as the oracle of ``reconcile convert``: the corpus of :mod:`.corpus`, field by field.

For every good case, ``docker compose config --format json`` (compose's own normalised project:
interpolation, merges, short forms resolved) mapped through :func:`tests.support.compose.expected`
must equal what ``reconcile convert -o json`` printed, object by object and field by field. Bad
files: compose refuses them too, and convert says each problem as ``file:line:col: ...`` with no
traceback; valid compose that has no manifest equivalent is refused at its place, never dropped.
No daemon is involved (``config`` needs none).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.compose import corpus
from tests.support import compose

pytestmark = pytest.mark.integration

POSITION = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")


def write(case: corpus.Case, tmp_path: Path) -> Path:
    """The case's files in a folder named ``case.folder`` (its name is the project's by default)."""
    folder = tmp_path / case.folder
    for name, body in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return folder


def test_enough_cases() -> None:
    assert len(corpus.GOOD) + len(corpus.INVALID) + len(corpus.REFUSED) >= 40
    names = [case.name for case in corpus.GOOD + corpus.INVALID + corpus.REFUSED]
    assert len(names) == len(set(names)), "case names are test ids: each once"


@pytest.mark.parametrize("case", corpus.GOOD, ids=lambda case: case.name)
def test_convert_prints_what_compose_config_means(case: corpus.Case, tmp_path: Path) -> None:
    folder = write(case, tmp_path)
    oracle = compose.config(folder, case.invocation)
    assert oracle.returncode == 0, f"compose refused a good case (the corpus is wrong):\n{oracle.stderr}"
    want = compose.expected(json.loads(oracle.stdout))
    printed = compose.convert(folder, case.invocation)
    assert "Traceback" not in printed.stderr + printed.stdout, printed.stderr
    assert printed.returncode == 0, f"reconcile convert refused what compose accepts:\n{printed.stderr}"
    problems = compose.differences(want, compose.converted(compose.documents(printed.stdout), folder))
    assert not problems, "convert differs from compose config:\n" + "\n".join(problems)


def refusal_lines(printed: subprocess.CompletedProcess[str], case: corpus.Case) -> list[str]:
    """Convert's error lines, after checking it refused cleanly: exit 1, positions, no traceback."""
    assert "Traceback" not in printed.stderr + printed.stdout, printed.stderr
    assert printed.returncode == 1, f"reconcile convert exited {printed.returncode}; stderr:\n{printed.stderr}"
    lines = [line for line in printed.stderr.splitlines() if POSITION.match(line) and ": warning:" not in line]
    assert lines, f"no file:line:col error from reconcile convert; stderr:\n{printed.stderr}"
    for line in lines:
        file = POSITION.match(line)["file"]  # type: ignore[index]
        assert Path(file).name in {Path(name).name for name in case.files}, f"{line!r} names no file of the case"
    for wanted in case.says:
        assert any(re.search(wanted, line) for line in lines), f"no error line matches {wanted!r}:\n" + "\n".join(lines)
    return lines


@pytest.mark.parametrize("case", corpus.INVALID, ids=lambda case: case.name)
def test_both_refuse_a_bad_file(case: corpus.Case, tmp_path: Path) -> None:
    folder = write(case, tmp_path)
    oracle = compose.config(folder, case.invocation)
    assert oracle.returncode != 0, f"compose accepts the bad case (the corpus is wrong):\n{oracle.stdout[:2000]}"
    refusal_lines(compose.convert(folder, case.invocation), case)


@pytest.mark.parametrize("case", corpus.REFUSED, ids=lambda case: case.name)
def test_convert_refuses_in_place_what_has_no_manifest_field(case: corpus.Case, tmp_path: Path) -> None:
    folder = write(case, tmp_path)
    oracle = compose.config(folder, case.invocation)
    assert oracle.returncode == 0, f"compose refused the case (the corpus is wrong):\n{oracle.stderr}"
    lines = refusal_lines(compose.convert(folder, case.invocation), case)
    assert len(lines) >= len(case.says), "every problem is reported at once"


def test_build_with_an_image_warns_and_uses_the_image(tmp_path: Path) -> None:
    (case,) = [case for case in corpus.GOOD if case.name == "build-with-image"]
    folder = write(case, tmp_path)
    printed = compose.convert(folder, case.invocation)
    assert printed.returncode == 0, printed.stderr
    # The position and the word warning, in either order (`warning: file:line:col: ...` or `file:line:col: warning: ...`).
    warnings = [
        line for line in printed.stderr.splitlines() if re.search(r"compose\.yaml:\d+:\d+", line) and "warning" in line
    ]
    assert any("build" in line for line in warnings), f"no file:line:col warning about build:\n{printed.stderr}"
    (document,) = [doc for doc in compose.documents(printed.stdout) if doc.get("kind") == "Container"]
    assert document["spec"]["image"] == corpus.IMAGE
