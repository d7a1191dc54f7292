"""A solve job in one call: run the batch pipeline, then summarize what it wrote.

The pipeline (`qvq_ray.batch`) writes part files; the summary and its headline are computed from
those files by the report (`qvq_ray.report.summary`). The two are siblings and import neither
each other: this module, above both, puts them together for `qvq-ray solve` and for Python callers
(`qvq_ray.run_solve_job`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig
    from qvq_ray.report.summary import JobSummary


def run_solve_job(input_path: str, out_dir: str, config: "QvqConfig", **options: Any) -> "JobSummary":
    """Solve a problem set into `out_dir` and return the summary of what is on disk.

    `options` are `qvq_ray.batch.pipeline.run_pipeline`'s (limit, input_format, images_dir, address,
    num_cpus, resume, check_images_first, verbose, printer, warn); its JobInputError (a mistake in
    the request, found before Ray starts) passes through.
    """
    from qvq_ray.batch.pipeline import run_pipeline
    from qvq_ray.report.summary import summarize_output

    run = run_pipeline(input_path, out_dir, config, **options)
    return summarize_output(run.out_dir, rows_in=run.rows_in, seconds=run.seconds)
