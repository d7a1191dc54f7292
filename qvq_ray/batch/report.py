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
    accuracy: float | None = Field(
        None, description="correct / with_gold of the final answer. In oracle mode gold picked it: it is pass@k."
    )
    pass_at_1: float | None = Field(None, description="Share of gold rows whose first attempt is correct.")
    maj_at_k: float | None = Field(None, description="Share of gold rows whose majority answer is correct.")
    pass_at_k: float | None = Field(None, description="Share of gold rows with some correct attempt.")
    mode: str = Field("self", description="Policy mode: 'self' (gold never read while solving) or 'oracle'.")
    attempts: int = 0
    completion_tokens: int = 0
    tokens_saved: int = Field(0, description="Tokens the loop cut-off saved.")
    seconds: float = 0.0

    def lines(self) -> list[str]:
        def share(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1%}"

        if self.accuracy is None:
            acc = "n/a (no gold)"
        else:
            acc = f"{self.accuracy:.1%} ({self.correct}/{self.with_gold})"
        label = "accuracy  " if "oracle" not in self.mode else "pass@k    "
        note = "gold never read while solving" if "oracle" not in self.mode else "ORACLE: gold used while solving"
        return [
            f"rows       {self.rows_out} written / {self.rows_in} in",
            f"solved     {self.solved}",
            f"verified   {self.verified}",
            f"errors     {self.errors}",
            f"{label} {acc}  [mode={self.mode}: {note}]",
            f"metrics    pass@1 {share(self.pass_at_1)}  maj@k {share(self.maj_at_k)}  pass@k {share(self.pass_at_k)}",
            f"attempts   {self.attempts}  tokens {self.completion_tokens}  saved by loop cut-off {self.tokens_saved}",
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

    def rate(column: str) -> float | None:
        return (sum(1 for r in with_gold if r.get(column) is True) / len(with_gold)) if with_gold else None

    return JobSummary(
        rows_in=rows_in,
        rows_out=len(rows),
        solved=len(rows) - errors,
        verified=sum(1 for r in rows if r.get("verified")),
        errors=errors,
        with_gold=len(with_gold),
        correct=correct,
        accuracy=(correct / len(with_gold)) if with_gold else None,
        pass_at_1=rate("pass_at_1"),
        maj_at_k=rate("maj_at_k"),
        pass_at_k=rate("pass_at_k"),
        mode=",".join(sorted(modes)) or "self",
        attempts=sum(int(r.get("num_attempts") or 0) for r in rows),
        completion_tokens=sum(int(r.get("completion_tokens") or 0) for r in rows),
        tokens_saved=sum(int(r.get("tokens_saved") or 0) for r in rows),
        seconds=seconds,
    )
