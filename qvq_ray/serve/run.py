"""`qvq-ray serve CONFIG`: run a Serve config file the way `serve run CONFIG` does.

The same YAML works with `serve run` / `serve deploy` (Ray's CLIs); this entry point exists so the
project's own command starts a local cluster with the right settings and prints where it listens.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any


def _import_builder(import_path: str):
    """'pkg.module:attr' (Serve's form) or 'pkg.module.attr'."""
    module_name, _, attr = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def run_serve_config(config_file: str, *, address: str | None = None, blocking: bool = True) -> dict[str, Any]:
    import ray
    import yaml
    from ray import serve

    spec = yaml.safe_load(Path(config_file).read_text()) or {}
    http = spec.get("http_options") or {}
    host, port = http.get("host", "127.0.0.1"), int(http.get("port", 8000))
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True) if address else ray.init(
            include_dashboard=False
        )
    serve.start(http_options={"host": host, "port": port}, proxy_location=spec.get("proxy_location", "HeadOnly"))
    urls = {}
    for app_spec in spec.get("applications") or []:
        if app_spec.get("deployments"):
            raise ValueError(
                "per-deployment overrides in 'deployments:' are not applied by qvq-ray serve; "
                "put resources and autoscaling in args.config, or use `serve run`"
            )
        builder = _import_builder(app_spec["import_path"])
        app = builder(app_spec.get("args") or {})
        name = app_spec.get("name", "default")
        prefix = app_spec.get("route_prefix", "/")
        serve.run(app, name=name, route_prefix=prefix, blocking=False)
        urls[name] = f"http://{host}:{port}{prefix.rstrip('/')}"
        print(f"qvq-ray serve: application {name!r} ready at {urls[name]}/v1 (OpenAI API), {urls[name]}/v1/solve", flush=True)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return urls
