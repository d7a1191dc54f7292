"""Ray Serve front end: an engine deployment and an OpenAI-compatible ingress over it.

Owns: the application (app.py, `qvq-ray serve`), the engine deployment and its client, the ingress
and its HTTP routes, request models, health and metrics. It may import everything below the front
ends (the solver, the judge, the engines, the records, verify, config, the floor: `qvq_ray.console`
for what it prints and Ctrl-C); never `qvq_ray.batch` or `qvq_ray.report`, its siblings, nor the
CLI above (the CLI calls it). tests/test_import_layers.py holds it to that.
"""
