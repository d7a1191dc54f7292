"""Start our own local Ray cluster, or join the one named: never one found by accident.

A plain `ray.init()` joins whatever cluster `/tmp/ray/ray_current_cluster` names, a stale file
included (a job then hangs), and refuses `num_cpus` when it joins. So without an address, the CLI
starts a fresh local cluster (`address="local"`); with one (`auto`, `ray://...`, `host:port`), it
joins that cluster and leaves its resources alone.

Quiet by default: the console of a `qvq-ray` command shows the command's own output and real
errors. Ray's INFO lines ("Started a local Ray instance") stay in Ray's log files, and so does the
warning that a NEW local cluster has token authentication on (Ray 2.60's secure default, which is
kept: the warning only announces it). Joining a cluster keeps every Ray warning, the token ones
included: there they are about the user's own cluster. `verbose=True` shows all of Ray's logs.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

# Ray 2.60 logs "Token authentication is enabled for this Ray cluster" here whenever ray.init
# starts a local cluster without RAY_AUTH_MODE set.
_TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def start_or_join_ray(
    address: str | None, *, num_cpus: int | None = None, log_to_driver: bool = False, verbose: bool = False
) -> bool:
    """Initialise Ray in this process; True if this call started it (the caller shuts it down).

    `log_to_driver` forwards the workers' stdout/stderr to this console (Serve wants it); `verbose`
    forces it and shows Ray's INFO logs.
    """
    import ray

    if ray.is_initialized():
        return False
    options = {"log_to_driver": log_to_driver or verbose, "logging_level": "info" if verbose else "warning"}
    if address:
        ray.init(address=address, **options)
    else:
        with _quiet_logger(_TOKEN_AUTH_LOGGER, unless=verbose):
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **options)
    return True


@contextmanager
def _quiet_logger(name: str, *, unless: bool) -> Iterator[None]:
    """Only errors from logger `name` inside the block (unless `unless`)."""
    logger = logging.getLogger(name)
    level = logger.level
    if not unless:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
