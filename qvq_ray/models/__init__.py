"""Model files, not engines: the embedded and random tiny Qwen2-VL (tiny.py), and the image-only
Qwen2-VL processor for when torchvision is absent (processor.py).

May import `qvq_ray.config` and the floor only; the engines import it, never the reverse.
tests/test_import_layers.py holds it to that.
"""
