"""Start our own local Ray cluster, or join the one named: never one found by accident.

A plain `ray.init()` joins whatever cluster `/tmp/ray/ray_current_cluster` names, a stale file
included (a job then hangs), and refuses `num_cpus` when it joins. So without an address, the CLI
starts a fresh local cluster (`address="local"`); with one (`auto`, `ray://...`, `host:port`), it
joins that cluster and leaves its resources alone.
"""

from __future__ import annotations


def start_or_join_ray(address: str | None, *, num_cpus: int | None = None, log_to_driver: bool = False) -> bool:
    """Initialise Ray in this process; True if this call started it (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
    return True
