"""One way to tell a person what is wrong with a config, a row or a request (console.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int
    y: list[int] = []


def _error(value: dict) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Row.model_validate(value)
    return caught.value


def test_a_rows_reason_names_each_key_as_a_configs_does():
    from qvq_ray.datasets.base import validation_message

    reason = validation_message(_error({"x": "seven", "z": 1}))
    assert reason.startswith("x: Input should be a valid integer") and reason.endswith("; z: unknown key")
    assert validation_message(_error({"x": 1, "y": ["a", "b", "c", "d"]})) == (
        "y.0: Input should be a valid integer, unable to parse string as an integer; "
        "y.1: Input should be a valid integer, unable to parse string as an integer; "
        "y.2: Input should be a valid integer, unable to parse string as an integer (and 1 more)"
    )


def test_invalid_yaml_is_said_the_same_by_the_cli_and_serve(tmp_path, capsys):
    from qvq_ray.cli import main
    from qvq_ray.serve.app import run_serve_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  path: [unclosed\n")
    with pytest.raises(ValueError) as served:
        run_serve_config(str(bad))
    assert str(served.value).startswith(f"{bad} is not valid YAML (line 3): ")
    assert main(["solve", str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(bad)]) == 2
    assert f"--config {bad} is not valid YAML (line 3): " in capsys.readouterr().err
