"""Compose's interpolation: every form, $$, .env beside the file, --env-file, errors at their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.compose import interpolation
from tests.unit.compose_helpers import convert, errors_of, spec, write

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$SET", "value"),
        ("${SET}/x", "value/x"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${SET:+other}", "other"),
        ("${EMPTY:+other}", ""),
        ("${EMPTY+other}", "other"),
        ("${UNSET+other}", ""),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("${UNSET:-${SET}-nested}", "value-nested"),
        ("cost: 5$", "cost: 5$"),
    ],
)
def test_forms(template: str, expected: str) -> None:
    assert interpolation.interpolate(template, ENV, lambda _m: None) == expected


def test_unset_variable_is_blank_with_a_warning() -> None:
    warnings: list[str] = []
    assert interpolation.interpolate("a${UNSET}b", ENV, warnings.append) == "ab"
    assert warnings == ['the "UNSET" variable is not set; defaulting to a blank string']


@pytest.mark.parametrize("template", ["${UNSET:?needed}", "${EMPTY:?needed}", "${UNSET?needed}"])
def test_required_variables(template: str) -> None:
    with pytest.raises(interpolation.InterpolationError, match="needed"):
        interpolation.interpolate(template, ENV, lambda _m: None)


@pytest.mark.parametrize("template", ["${", "${SET", "${1X}", "${SET!x}"])
def test_bad_templates(template: str) -> None:
    with pytest.raises(interpolation.InterpolationError, match="invalid template"):
        interpolation.interpolate(template, ENV, lambda _m: None)


def test_dot_env_beside_the_file_and_env_file_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAG", raising=False)
    monkeypatch.setenv("FROM_PROCESS", "p")
    write(tmp_path, ".env", "TAG=1.0\n# comment\nexport QUOTED='$NOT'\nFROM_PROCESS=file\n")
    write(tmp_path, "other.env", "TAG=2.0\n")
    compose = write(
        tmp_path,
        "compose.yaml",
        """
        services:
          web:
            image: busybox:${TAG}
            environment: {Q: "${QUOTED}", P: "$FROM_PROCESS", D: "$$HOME"}
        """,
    )
    documents = convert(compose, project_name="p")
    web = spec(documents, "p-web-1")
    assert web["image"] == "busybox:1.0"
    assert web["env"] == {"Q": "$NOT", "P": "p", "D": "$HOME"}  # the process's variable wins, as in compose
    assert (
        spec(convert(compose, project_name="p", env_files=(str(tmp_path / "other.env"),)), "p-web-1")["image"]
        == "busybox:2.0"
    )


def test_errors_have_positions_all_at_once(tmp_path: Path) -> None:
    compose = write(
        tmp_path,
        "compose.yaml",
        """
        services:
          web:
            image: ${IMAGE:?set IMAGE to the image to run}
            user: "${broken"
        """,
    )
    assert errors_of(compose) == [
        f"{compose}:3:12: services.web.image: required variable IMAGE is missing a value: set IMAGE to the image to run",
        f"{compose}:4:11: services.web.user: invalid template '${{broken': a ${{ is not closed",
    ]
