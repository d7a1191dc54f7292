"""Job summaries and reports, computed from the files a job wrote (what is on disk is what is reported).

summary: `summarize_output`, `write_report`, `headline_table`; stats: the numbers; tables and plots:
what the report shows; problems: the per-problem view; compare: two runs side by side; blocks:
headings and flipped problems; render: Markdown and self-contained HTML; runinfo: the run record.

It reads the result format through `qvq_ray.results` and may import everything below the front
ends (datasets and images for thumbnails, the records, verify, config, the floor); never
`qvq_ray.batch` or `qvq_ray.serve`, its siblings, nor the jobs or the CLI above.
tests/test_import_layers.py holds it to that.
"""
