"""What a run was: the record the CLI writes beside the part files, and the facts a report shows.

Output rows record the prompt (preset, template hash), each attempt's sampling and the mode, but
not the model, the engine or the policy. `qvq-ray solve` therefore writes `_run.json` into the
output directory (and `qvq-ray rescore` writes one saying where the outputs came from). The name
starts with '_' so that `pandas.read_parquet(DIR)`, `pyarrow.dataset` and Spark skip it, as they
skip `_SUCCESS`; `--resume` adds the resumed invocation to the same file.

`run_facts` merges the record with what the rows themselves say (the rows win where both speak:
they are what was actually done); `differences` lists the facts two runs disagree on, for
`qvq-ray report A B`.
"""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvq_ray.config import JudgeConfig, QvqConfig

RUN_FILE = "_run.json"
#: Engine settings never written to the record (a key in the config file would be a secret).
SECRET_KEYS = ("api_key",)


def run_file(out_dir: str | Path) -> Path:
    return Path(out_dir) / RUN_FILE


def command_line(argv: list[str]) -> str:
    return shlex.join(["qvq-ray", *argv])


def solve_record(config: QvqConfig, *, argv: list[str], input_path: str, resume: bool) -> dict[str, Any]:
    """The settings of a `qvq-ray solve` invocation that its rows do not record (and the prompt's, again)."""
    from qvq_ray import __version__
    from qvq_ray.prompt import template_sha

    engine = {k: v for k, v in config.engine.model_dump(mode="json").items() if k not in SECRET_KEYS}
    judge = config.verifier.judge
    return {
        "kind": "solve",
        "qvq_ray": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(argv),
        "resume": resume,
        "input": str(input_path),
        "model": {k: v for k, v in config.model.model_dump(mode="json").items() if k != "system_prompt"},
        "engine": engine,
        "prompt": {"preset": config.prompt.preset, "overrides": config.prompt.overrides(),
                   "template_sha": template_sha(config.prompt, config.model.system_prompt)},
        "sampling": config.sampling.model_dump(mode="json"),
        "policy": config.policy.model_dump(mode="json"),
        "judge": None if judge is None else _judge_summary(judge),
    }


def _judge_summary(judge: JudgeConfig) -> str:
    engine = judge.engine
    if engine is None:
        return "the solving engine"
    return f"{getattr(engine, 'remote_model', None) or 'model'} at {getattr(engine, 'base_url', None)}"


def rescore_record(*, argv: list[str], results: str, results_format: str | None, problems: str,
                   problems_format: str | None, judge: str | None) -> dict[str, Any]:
    """Where a rescore's responses came from: another tool's result file (read as `results_format`,
    the one rescore used), scored here."""
    from qvq_ray import __version__

    return {
        "kind": "rescore",
        "qvq_ray": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(argv),
        "results": str(Path(results).resolve()),
        "results_format": results_format,
        "problems": str(Path(problems).resolve()),
        "problems_format": problems_format,
        "judge": judge,
    }


def write_run_record(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Add `record` to DIR/_run.json (written whole, then renamed: never a half file)."""
    path = run_file(out_dir)
    runs = read_run_records(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{RUN_FILE}.tmp")
    temporary.write_text(json.dumps({"runs": [*runs, record]}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


class RunRecorder:
    """This invocation's record in DIR/_run.json: `write` once the job is under way (never into a
    folder a refused job leaves as it was), `settle` at its end, however it ends: recorded if rows
    are there (Ray may have been up already, so no start was heard), removed again if this record
    is the folder's only content (a new run, not only `--resume`, must then accept the folder)."""

    def __init__(self, out_dir: str | Path, record: dict[str, Any]):
        self.out_dir, self.record = Path(out_dir), record
        self.path: Path | None = None
        self.refused = False  # set when the job was refused before it started: settle leaves all as it is

    def write(self) -> None:
        if self.path is None:
            self.path = write_run_record(self.out_dir, self.record)

    def settle(self) -> None:
        from qvq_ray.results.parts import part_files

        if self.refused:
            return
        if self.out_dir.is_dir() and part_files(self.out_dir):
            self.write()
        elif self.path is not None and len(read_run_records(self.out_dir)) == 1:
            self.path.unlink(missing_ok=True)


def read_run_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every invocation recorded in DIR/_run.json, oldest first ([] when there is none or it is unreadable)."""
    try:
        data = json.loads(run_file(out_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    runs = data.get("runs") if isinstance(data, dict) else None
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


# ---------------------------------------------------------------- facts for a report


def _counted(counter: Counter[str], unit: str = "row") -> str:
    """'a' for one value; 'a (3 rows); b (1 row)' for several."""
    if len(counter) == 1:
        return str(next(iter(counter)))
    return "; ".join(f"{value} ({n} {unit}{'s' if n != 1 else ''})" for value, n in counter.most_common())


#: Sampling settings a header names, and the values it leaves unsaid (they change nothing).
SAMPLING_SHOWN = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "seed", "repetition_penalty",
                  "presence_penalty", "frequency_penalty")
SAMPLING_NEUTRAL = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "seed": None, "repetition_penalty": 1.0,
                    "presence_penalty": 0.0, "frequency_penalty": 0.0}
POLICY_SHOWN = ("mode", "max_attempts", "self_consistency", "quorum", "parallel_samples", "token_budget", "loop_cutoff")


def _settings(values: dict[str, Any], keys: tuple[str, ...], neutral: dict[str, Any] | None = None) -> str:
    neutral = neutral or {}
    return ", ".join(f"{k} {values[k]}" for k in keys if k in values and (k not in neutral or values[k] != neutral[k]))


def _sampling(values: dict[str, Any]) -> str:
    return _settings(values, SAMPLING_SHOWN, SAMPLING_NEUTRAL)


def row_facts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """What the rows themselves record: prompt preset and template hash, sampling, mode."""
    presets: Counter[str] = Counter()
    shas: Counter[str] = Counter()
    sampling: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for row in rows:
        prompt = row.get("prompt") or {}
        if prompt.get("preset"):
            overrides = prompt.get("overrides") or []
            presets[prompt["preset"] + (f" (overrides: {', '.join(overrides)})" if overrides else "")] += 1
        if prompt.get("template_sha"):
            shas[prompt["template_sha"]] += 1
        attempts = row.get("attempts") or []
        if attempts and row.get("mode"):
            modes[row["mode"]] += 1
        for attempt in attempts:
            if isinstance(attempt.get("sampling"), dict):
                sampling[_sampling(attempt["sampling"])] += 1
    facts: dict[str, str] = {}
    if presets:
        facts["prompt preset"] = _counted(presets)
    if shas:
        facts["template hash"] = _counted(shas)
    if sampling:
        facts["sampling"] = _counted(sampling, "attempt")
    if modes:
        facts["mode"] = _counted(modes)
    return facts


def run_facts(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(setting, value, where it is recorded) for a report's header: the last record's settings,
    with the rows' own over them where the rows say."""
    facts: list[tuple[str, str, str]] = []
    record = records[-1] if records else {}
    if record.get("kind") == "rescore":
        facts += [("outputs from", f"{record.get('results')} ({record.get('results_format') or 'format not told'})", RUN_FILE),
                  ("problems", str(record.get("problems")), RUN_FILE),
                  ("scored by", "qvq-ray rescore (this verifier)" + (f"; judge: {record['judge']}" if record.get("judge") else ""), RUN_FILE)]
    elif record:
        model = record.get("model") or {}
        engine = record.get("engine") or {}
        where = f" at {engine['base_url']}" + (f" (model {engine['remote_model']})" if engine.get("remote_model") else "") \
            if engine.get("base_url") else ""
        facts += [("model", str(model.get("path")), RUN_FILE),
                  ("engine", f"{engine.get('kind')}{where}, max_batch_size {engine.get('max_batch_size')}", RUN_FILE)]
    from_rows = row_facts(rows)
    prompt = record.get("prompt") or {}
    for key, recorded in (("prompt preset", prompt.get("preset")), ("template hash", prompt.get("template_sha"))):
        if key in from_rows:
            facts.append((key, from_rows[key], "rows"))
        elif recorded:
            facts.append((key, str(recorded), RUN_FILE))
    if record.get("kind") != "rescore":
        if "sampling" in from_rows:
            facts.append(("sampling", from_rows["sampling"], "rows"))
        elif record.get("sampling"):
            facts.append(("sampling", _sampling(record["sampling"]), RUN_FILE))
        if record.get("policy"):
            facts.append(("policy", _settings(record["policy"], POLICY_SHOWN), RUN_FILE))
        elif "mode" in from_rows:
            facts.append(("policy", f"mode {from_rows['mode']}", "rows"))
        if record.get("judge"):
            facts.append(("judge", str(record["judge"]), RUN_FILE))
    if record:
        facts.append(("command", str(record.get("command")), RUN_FILE))
        if len(records) > 1:
            facts.append(("invocations", f"{len(records)} (resumed {len(records) - 1} time(s)); "
                          + _drift(records), RUN_FILE))
    else:
        facts.append(("not recorded", f"model, engine and policy: the output directory has no {RUN_FILE} (not "
                      "written by `qvq-ray solve`, or by a version before it was recorded); the rest is from the rows", ""))
    return facts


def flat_settings(record: dict[str, Any]) -> dict[str, str]:
    """A record's settings as dotted keys ('sampling.temperature': '0.7'), for comparing runs."""
    out: dict[str, str] = {}
    for section in ("model", "engine", "prompt", "sampling", "policy", "judge", "kind", "results", "results_format"):
        value = record.get(section)
        if isinstance(value, dict):
            for key, item in value.items():
                out[f"{section}.{key}"] = json.dumps(item, sort_keys=True) if isinstance(item, (dict, list)) else str(item)
        elif value is not None:
            out[section] = str(value)
    return out


def _drift(records: list[dict[str, Any]]) -> str:
    first, last = flat_settings(records[0]), flat_settings(records[-1])
    changed = sorted(k for k in set(first) | set(last) if first.get(k) != last.get(k))
    return "settings changed between invocations: " + ", ".join(changed) if changed else "same settings each time"


def differences(rows_a: list[dict[str, Any]], records_a: list[dict[str, Any]],
                rows_b: list[dict[str, Any]], records_b: list[dict[str, Any]]) -> list[list[str]]:
    """[setting, A, B] for every setting the two runs differ on: the rows' facts first (prompt
    preset, template hash, sampling, mode), then the recorded settings."""
    out = []
    facts_a, facts_b = row_facts(rows_a), row_facts(rows_b)
    for key in ("prompt preset", "template hash", "sampling", "mode"):
        a, b = facts_a.get(key, "(not recorded)"), facts_b.get(key, "(not recorded)")
        if a != b:
            out.append([key, a, b])
    flat_a = flat_settings(records_a[-1]) if records_a else {}
    flat_b = flat_settings(records_b[-1]) if records_b else {}
    if flat_a and flat_b:
        for key in sorted(set(flat_a) | set(flat_b)):
            if key.startswith("prompt.") and key != "prompt.overrides":
                continue  # the rows' preset and hash above say it
            a, b = flat_a.get(key, "(unset)"), flat_b.get(key, "(unset)")
            if a != b:
                out.append([key, a, b])
    return out
