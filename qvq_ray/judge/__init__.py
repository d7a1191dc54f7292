"""The judge model: asked only where the rules cannot decide, and never trusted past what it said.

Owns: the `JudgingChecker` (checker.py: a `Verifier` with a judge, an `AnswerChecker` like it, and
`judging_checker`, which picks the checker a config asks for), the `Judge` itself (model.py: one
question at a time on an engine, with a timeout), what it spends (budget.py), which golds are free
text (free_text.py), its prompt presets (prompts.py, sources named) and its SQLite answer cache
(cache.py). Beside the solver, above the engines it runs on: it may import the floor modules,
`qvq_ray.config`, `qvq_ray.verify` (the Verifier it wraps, the `AnswerChecker` contract, the
verdict records) and `qvq_ray.engines`; nothing above (the solver, the front ends).
tests/test_import_layers.py holds it to that.
"""
