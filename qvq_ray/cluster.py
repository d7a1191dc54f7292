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
import time
from contextlib import contextmanager
from typing import Callable, Iterator

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
    started = time.perf_counter()
    if address:
        _tell("starting", f"joining the Ray cluster at {address}")
        ray.init(address=address, **options)
    else:
        cpus = f"{num_cpus} CPU{'s' if num_cpus != 1 else ''}" if num_cpus else "all CPUs"
        _tell("starting", f"starting a local Ray cluster ({cpus})")
        with _quiet_logger(_TOKEN_AUTH_LOGGER, unless=verbose):
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **options)
    _tell("started", f"Ray {'joined' if address else 'started'} in {time.perf_counter() - started:.1f} s")
    return True


#: Who hears when Ray is being started and when it is up (the CLI's start-up lines).
_listeners: list[Callable[[str, str], None]] = []


@contextmanager
def ray_start_listener(listener: Callable[[str, str], None]) -> Iterator[None]:
    """Within the block, `listener(event, text)` hears "starting" before Ray is started or joined
    and "started" once it is up: a command that starts Ray says so instead of staying silent."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _tell(event: str, text: str) -> None:
    for listener in list(_listeners):
        listener(event, text)


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
