"""Job summaries and reports, computed from the files a job wrote (what is on disk is what is reported).

summary: `summarize_output`, `write_report`, `headline_table`; stats: the numbers; tables and plots:
what the report shows; problems: the per-problem view; compare: two runs side by side; render:
Markdown and self-contained HTML.
"""
