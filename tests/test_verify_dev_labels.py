"""The development set of real model outputs: our adjudicated labels and the verifier's agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import script_module, shared_data

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "verify" / "dev_labels.json"


def _benchmark():
    return script_module(ROOT / "benchmarks" / "verifier.py")


def test_labels_are_labels_only():
    doc = json.loads(LABELS.read_text(encoding="utf-8"))
    assert set(doc["sets"]) == {name for name, _ in _benchmark().DEV_SETS}
    assert len(doc["sets"]) == 9
    for name, s in doc["sets"].items():
        assert s["cases"] in (1000, 3040)
        for key, row in s["corrections"].items():
            assert key.isdigit() and set(row) == {"correct", "official", "why"}
            assert row["correct"] is not row["official"]  # a correction changes the official label


def test_benchmark_skips_without_shared_data(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("QVQ_RAY_SHARED_DATA", str(tmp_path))
    assert _benchmark().build_dev_cases(5) == []
    assert "skipped" in capsys.readouterr().err


def test_agreement_with_adjudicated_labels_on_a_sample():
    bench = _benchmark()
    cases = bench.build_dev_cases(120)
    if not cases:
        shared_data("model_outputs")  # skips (or, where the shared data is required, fails) saying where it looked
        pytest.fail("../shared/data/model_outputs is there, yet no labelled case was built from it")
    from qvq_ray.verify.verifier import default_verifier

    verifier = default_verifier()
    by_set: dict[str, list[tuple[bool, bool]]] = {}
    for case in cases:
        verdict = verifier.check_sync(case["response"], case["spec"], gold=case["gold"], question=case["question"])
        by_set.setdefault(case["kind"], []).append((bool(verdict.correct), case["label"]))
    for name, pairs in by_set.items():
        agree = sum(a == b for a, b in pairs) / len(pairs)
        false_accepts = sum(a and not b for a, b in pairs)
        floor, accepts = FLOORS.get(name, (0.99, 0))
        assert agree >= floor, name
        assert false_accepts <= accepts, name


# The open models' chatty sets keep a few misses the string rules cannot read safely (judged in
# issue 21's reports): an answer spread over two sentences by a pronoun (`... on the crabs and
# limpets. As a result, their population would decrease.`), a yes/no left to infer from two
# attributes that differ (`X is shaped like a rectangle, while Y is shaped like an octagon`), and
# three whose official label is doubtful (an answer then `difficult to predict ... without more
# information`, a rate `1 out of 10` for the value 1, a range `from 0 to 7` for 7). No set may
# accept a wrong answer. The full sets measure 99.70% (LLaVA), 99.90% (MiniGPT-4), 99.90%
# (mPLUG-Owl); every other set 100%. The sample (the first 120 of each set) holds one of them
# (LLaVA's, the pronoun): 119/120 there, within the default floor of 99%.
FLOORS: dict[str, tuple[float, int]] = {}
