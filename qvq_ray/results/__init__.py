"""The on-disk result format of a run: what the batch job writes and the report reads back.

Owns: the part files of an output folder (parts.py: atomic writes, the resumed job's look at what
is done, the files a reader lists) and the scores each row carries (metrics.py: pass@1, maj@k,
pass@k, the score columns, who decided). The rows' schema itself is the records' (qvq_ray/problem.py,
qvq_ray/arrow_rows.py). Here so that `qvq_ray.batch` and `qvq_ray.report`, siblings, never import
each other: both import this, downward. It may import the floor modules only (`qvq_ray.json_lines`).
tests/test_import_layers.py holds it to that.
"""
