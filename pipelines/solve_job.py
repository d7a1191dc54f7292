"""Entrypoint for `ray job submit`: the batch solve job on the cluster the job runs in.

    ray job submit --working-dir . -- python pipelines/solve_job.py /data/MathVision \
        --out /data/results/mathvision --config pipelines/qvq-72b-hf.yaml

Same arguments as `qvq-ray solve`; inside a submitted job it joins the job's cluster.
"""

from __future__ import annotations

import sys

from qvq_ray.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--address" not in argv:
        argv += ["--address", "auto"]
    sys.exit(main(["solve", *argv]))
