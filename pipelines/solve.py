"""Entrypoint for `ray job submit`: the batch solve job on the cluster the job runs in.

    export RAY_AUTH_MODE=token            # Ray 2.60: the same on `ray start` and on every CLI call
    ray start --head
    ray job submit --working-dir . -- python pipelines/solve.py --config pipelines/configs/mathvision-tiny.yaml

Takes `qvq-ray solve`'s arguments; INPUT and --out default to the config's batch.input / batch.output.
Inside a submitted job it joins the job's cluster (--address auto) and resumes by default, so
re-submitting after a crash redoes only the missing ids.
"""

from __future__ import annotations

import sys

from qvq_ray.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--address" not in argv:
        argv += ["--address", "auto"]
    if "--resume" not in argv:
        argv.append("--resume")
    sys.exit(main(["solve", *argv]))
