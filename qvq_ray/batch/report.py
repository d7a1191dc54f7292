"""The job summary, computed from the files a job wrote (what is on disk is what is reported)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class JobSummary(BaseModel):
    rows_in: int = Field(..., description="Input rows, unreadable ones included.")
    rows_out: int = Field(..., description="Output rows written; equals rows_in when nothing was lost.")
    solved: int = Field(..., description="Rows with a solution (no error).")
    verified: int = Field(..., description="Solutions whose final answer passed the gold-free checks.")
    errors: int = Field(..., description="Rows that failed, each with its reason.")
    with_gold: int = Field(..., description="Rows that have a gold answer.")
    correct: int = Field(..., description="Rows whose final answer matches gold.")
    accuracy: float | None = Field(None, description="correct / with_gold (mode self: gold unseen while solving).")
    mode: str = Field("self", description="Policy mode; accuracy is pass@k, not accuracy, in oracle mode.")
    attempts: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        acc = "n/a (no gold)" if self.accuracy is None else f"{self.accuracy:.1%} ({self.correct}/{self.with_gold})"
        return [
            f"rows       {self.rows_out} written / {self.rows_in} in",
            f"solved     {self.solved}",
            f"verified   {self.verified}",
            f"errors     {self.errors}",
            f"accuracy   {acc}  [mode={self.mode}, pass@1 of the final answer]",
            f"attempts   {self.attempts}  tokens {self.completion_tokens}",
            f"time       {self.seconds:.1f} s",
        ]


def read_output(out_dir: str | Path):
    """All rows a job wrote, as one Arrow table (Parquet or JSONL)."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    root = Path(out_dir)
    if list(root.glob("*.parquet")):
        return pads.dataset(str(root), format="parquet").to_table()
    files = sorted(root.glob("*.json*"))
    if files:
        import pyarrow.json as pj

        return pa.concat_tables([pj.read_json(str(f)) for f in files], promote_options="default")
    raise FileNotFoundError(f"no output files in {root}")


def summarize_output(out_dir: str | Path, *, rows_in: int, seconds: float) -> JobSummary:
    rows = read_output(out_dir).to_pylist()
    errors = sum(1 for r in rows if r.get("error"))
    with_gold = [r for r in rows if r.get("gold") not in (None, "")]
    correct = sum(1 for r in with_gold if r.get("correct") is True)
    modes = {r.get("mode") for r in rows if r.get("mode")}
    return JobSummary(
        rows_in=rows_in,
        rows_out=len(rows),
        solved=len(rows) - errors,
        verified=sum(1 for r in rows if r.get("verified")),
        errors=errors,
        with_gold=len(with_gold),
        correct=correct,
        accuracy=(correct / len(with_gold)) if with_gold else None,
        mode=",".join(sorted(modes)) or "self",
        attempts=sum(int(r.get("num_attempts") or 0) for r in rows),
        completion_tokens=sum(int(r.get("completion_tokens") or 0) for r in rows),
        seconds=seconds,
    )
