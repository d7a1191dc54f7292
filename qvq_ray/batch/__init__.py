"""The batch front end: a problem set solved by a Ray Data job, and other tools' outputs re-scored.

Owns: the job (pipeline.py: the driver's checks, the dataset, progress), its input (source.py),
its stages (stages.py), scoring a row against gold (scoring.py) and `qvq-ray rescore`
(rescore.py). It writes the result format of `qvq_ray.results` and stops there: the summary and
the report of what it wrote are `qvq_ray.report`'s, put together with the job by `qvq_ray.jobs`.
It may import everything below the front ends (the solver, the judge, the engines, datasets,
results, records, verify, config, the floor); never `qvq_ray.report` or `qvq_ray.serve`, its
siblings, nor the jobs or the CLI above. tests/test_import_layers.py holds it to that.
"""
