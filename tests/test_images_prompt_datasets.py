"""Images (limits, decoding, Qwen2-VL sizing), prompt building, and problem-set loading."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from qvq_ray.config import ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.images import (
    ImageError,
    ImageLimits,
    decode_image,
    load_image_bytes,
    prepare_image,
    prepare_problem_images,
    smart_resize,
)
from qvq_ray.problem import ImageRef, Problem, problem_schema, problem_to_row
from qvq_ray.prompt import build_messages, choices_are_letters, messages_from_openai
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "problems"
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS_DEFAULT = 16384 * 28 * 28  # 12845056, Qwen2-VL preprocessor_config


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A real 1-bit all-black PNG of width x height, written row by row so it never sits in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- smart_resize


@pytest.mark.parametrize(
    "height,width,expected_tokens",
    [(224, 224, 64), (1024, 768, 999), (768, 1024, 999), (3024, 4032, 15552)],  # REFERENCE.md values
)
def test_smart_resize_reference_token_counts(height, width, expected_tokens):
    h, w = smart_resize(height, width, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS_DEFAULT)
    assert h % 28 == 0 and w % 28 == 0
    assert (h // 28) * (w // 28) == expected_tokens


def test_smart_resize_exact_sizes():
    assert smart_resize(224, 224) == (224, 224)
    assert smart_resize(1024, 768) == (1036, 756)  # round(36.57)=37, round(27.43)=27
    assert smart_resize(10, 10) == (56, 56)  # raised to min_pixels 3136 with ceil
    assert smart_resize(112, 224) == (112, 224)  # the arithmetic examples: 32 tokens


def test_smart_resize_caps_big_images_at_max_pixels():
    max_pixels = 1280 * 28 * 28
    for height, width in [(3024, 4032), (4000, 3000), (20000, 300), (1080, 1920), (9999, 7777)]:
        h, w = smart_resize(height, width, min_pixels=MIN_PIXELS, max_pixels=max_pixels)
        assert h * w <= max_pixels, (height, width, h, w)
        assert h % 28 == 0 and w % 28 == 0 and h >= 28 and w >= 28
        assert abs((h / w) - (height / width)) / (height / width) < 0.1  # aspect kept
        # A prepared image is a fixed point: the engine's processor leaves it as it is.
        assert smart_resize(h, w, min_pixels=MIN_PIXELS, max_pixels=max_pixels) == (h, w)
    assert smart_resize(3024, 4032, max_pixels=max_pixels) == (840, 1148)


def test_smart_resize_rejects_extreme_aspect_ratio():
    with pytest.raises(ImageError, match="aspect ratio"):
        smart_resize(10, 2010)
    assert smart_resize(10, 2000)  # exactly 200 is allowed, as in Qwen2-VL
    with pytest.raises(ImageError):
        smart_resize(0, 10)


# ---------------------------------------------------------------- decoding and limits


def test_decompression_bomb_refused_from_header_quickly():
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 1_000_000  # 400 megapixels in a small file: the point of a bomb
    started = time.perf_counter()
    # Past PIL's own limit (2 x 89.5M pixels) PIL refuses inside open: still our error, naming our limit.
    with pytest.raises(ImageError, match="decompression bomb.*max_pixels_decoded is 50000000"):
        decode_image(bomb, ImageLimits())
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(bomb, ImageLimits(max_pixels_decoded=10**9))
    # Between our limit and PIL's, our header check refuses it.
    medium = png_bomb(10000, 10000)
    with pytest.raises(ImageError, match="100000000 pixels, over max_pixels_decoded 50000000"):
        decode_image(medium)
    assert time.perf_counter() - started < 2.0


def test_pixel_and_byte_limits():
    data = encode(Image.new("RGB", (200, 100), "white"))
    with pytest.raises(ImageError, match="20000 pixels"):
        decode_image(data, ImageLimits(max_pixels_decoded=19_999))
    assert decode_image(data, ImageLimits(max_pixels_decoded=20_000)).size == (200, 100)
    with pytest.raises(ImageError, match="max_bytes"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    with pytest.raises(ImageError, match="max_bytes"):
        load_image_bytes(data, limits=ImageLimits(max_bytes=10))


def test_corrupt_truncated_and_foreign_bytes_give_image_error():
    png = encode(Image.radial_gradient("L").convert("RGB"))
    jpeg = encode(Image.radial_gradient("L").convert("RGB"), "JPEG")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL would run Ghostscript
    for bad in [b"not an image at all", png[: len(png) // 2], png[:40], jpeg[: len(jpeg) // 3], eps, b"\x00" * 64]:
        with pytest.raises(ImageError):
            decode_image(bad)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_decode_converts_to_rgb_with_transparency_on_white():
    im = decode_image(encode(Image.new("RGBA", (30, 30), (0, 0, 0, 0))))
    assert im.mode == "RGB" and im.getpixel((5, 5)) == (255, 255, 255)
    assert decode_image(encode(Image.new("L", (30, 30), 7))).getpixel((0, 0)) == (7, 7, 7)


def test_load_image_bytes_sources(tmp_path):
    data = encode(Image.new("RGB", (40, 20), "red"))
    b64 = base64.b64encode(data).decode()
    assert load_image_bytes(f"data:image/png;base64,{b64}") == data
    assert load_image_bytes(b64) == data  # bare base64 (VLMEvalKit TSV cells)
    assert load_image_bytes(ImageRef(bytes=data)) == data
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(data)
    assert load_image_bytes("img/a.png", base_dir=tmp_path) == data
    assert load_image_bytes(ImageRef(path=str(tmp_path / "img" / "a.png"))) == data
    with pytest.raises(ImageError, match="not found"):
        load_image_bytes("img/missing.png", base_dir=tmp_path)
    with pytest.raises(ImageError, match="base64"):
        load_image_bytes("data:image/png;base64,!!!notbase64!!!")
    with pytest.raises(ImageError, match="not an image"):
        load_image_bytes(f"data:text/html;base64,{b64}")
    with pytest.raises(ImageError, match="local image files are disabled"):
        load_image_bytes("img/a.png", base_dir=tmp_path, limits=ImageLimits(allow_local_files=False))


def test_urls_refused_by_default_and_never_private():
    with pytest.raises(ImageError, match="URL images are disabled"):
        load_image_bytes("https://example.com/cat.png")
    with pytest.raises(ImageError, match="URL images are disabled"):
        load_image_bytes(ImageRef(path="http://example.com/cat.png"))
    allowed = ImageLimits(allow_urls=True, url_timeout_s=2)
    for url in ["http://127.0.0.1:1/x.png", "http://169.254.169.254/latest", "http://10.1.2.3/a.png", "http://[::1]/a"]:
        with pytest.raises(ImageError, match="non-public"):
            load_image_bytes(url, limits=allowed)
    with pytest.raises(ImageError, match="scheme"):
        load_image_bytes("ftp://example.com/a.png", limits=allowed)


def test_prepare_image_resizes_to_smart_resize_size():
    big = encode(Image.linear_gradient("L").resize((1000, 500)).convert("RGB"), "JPEG")
    out = prepare_image(big, min_pixels=MIN_PIXELS, max_pixels=256 * 28 * 28)
    im = Image.open(io.BytesIO(out))
    assert im.format == "PNG" and im.mode == "RGB"
    assert (im.height, im.width) == smart_resize(500, 1000, max_pixels=256 * 28 * 28)
    assert im.width * im.height <= 256 * 28 * 28
    same = encode(Image.new("RGB", (224, 224), "blue"), "JPEG")
    assert prepare_image(same) is not None and prepare_image(same) == same  # no second lossy encode
    rgba = encode(Image.new("RGBA", (224, 224), (0, 0, 0, 0)))
    assert Image.open(io.BytesIO(prepare_image(rgba))).mode == "RGB"


def test_prepare_problem_images_counts_and_sizes():
    data = encode(Image.new("RGB", (100, 60), "white"))
    model = ModelConfig(max_images_per_prompt=2)
    out = prepare_problem_images([ImageRef(bytes=data)] * 2, model)
    assert [Image.open(io.BytesIO(b)).size for b in out] == [(112, 56)] * 2
    with pytest.raises(ImageError, match="too many images"):
        prepare_problem_images([ImageRef(bytes=data)] * 3, model)


# ---------------------------------------------------------------- prompt


def _parts(messages):
    return [(p["type"], p.get("image", p.get("text"))) for p in messages[-1]["content"]]


def test_build_messages_places_images_at_placeholders():
    problem = Problem(id="p", question="Look at <image1> and then <image 2>. Which is bigger?", choices=[])
    messages = build_messages(problem, [b"IMG1", b"IMG2"], system_prompt="SYS")
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": "SYS"}]}
    parts = _parts(messages)
    assert [t for t, _ in parts] == ["text", "image", "text", "image", "text"]
    assert parts[0][1] == "Look at " and parts[1][1] == b"IMG1" and parts[3][1] == b"IMG2"
    assert parts[4][1].startswith(". Which is bigger?\n")
    assert "\\boxed{}" in parts[4][1]
    assert "<image" not in "".join(v for t, v in parts if t == "text")


def test_build_messages_unreferenced_images_first_and_composite_tags():
    plain = build_messages(Problem(id="p", question="How many?"), [b"A", b"B"], system_prompt="")
    assert plain[0]["role"] == "user"  # empty system prompt: no system message
    assert [t for t, _ in _parts(plain)] == ["image", "image", "text"]
    # MathVision: tags <image1>..<image3>, one composite picture -> one image, at <image1>.
    mv = Problem(id="103", question="Which cards?\n<image1>\n<image2>\n<image3>", choices=list("ABCDE"))
    parts = _parts(build_messages(mv, [b"C"], system_prompt="S"))
    assert [t for t, _ in parts] == ["text", "image", "text"]
    assert parts[0][1] == "Which cards?\n"
    assert "Choices:" not in parts[2][1]  # options drawn in the image: letters are not listed
    assert "Answer with the option's letter from the given choices." in parts[2][1]
    # <image_1> (OlympiadBench) and a repeated tag: the image is placed once.
    parts = _parts(build_messages(Problem(id="o", question="<image_1> x <image_1> y"), [b"I"], system_prompt="S"))
    assert [t for t, _ in parts] == ["image", "text"]


def test_build_messages_renders_choices():
    problem = Problem(id="p", question="Pick one <image1>", choices=["$25 m$", "$40 m$", "7"], answer="B")
    text = _parts(build_messages(problem, [b"I"], system_prompt="S"))[-1][1]
    assert text.startswith("Choices:\nA. $25 m$\nB. $40 m$\nC. 7\n")
    assert "option's letter" in text and text.endswith("\\boxed{}.")
    assert "B" not in text.replace("B. ", "")  # the gold answer never reaches the prompt
    assert choices_are_letters(["(A)", "(B)", "(C)"]) and not choices_are_letters(["A", "C"])


def test_messages_from_openai_converts_image_url():
    data = encode(Image.new("RGB", (8, 8), "green"))
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    loader = partial(load_image_bytes, base_dir=None, limits=ImageLimits(allow_local_files=False))
    out = messages_from_openai(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What?"}]},
        ],
        loader,
    )
    assert out == [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "image", "image": data}, {"type": "text", "text": "What?"}]},
    ]
    with_default = messages_from_openai([{"role": "user", "content": "hi"}], loader, system_prompt="SYS")
    assert with_default[0]["role"] == "system"
    with pytest.raises(ValueError, match="unsupported content part type 'input_audio'"):
        messages_from_openai([{"role": "user", "content": [{"type": "input_audio"}]}], loader)
    with pytest.raises(ValueError, match="unsupported role 'tool'"):
        messages_from_openai([{"role": "tool", "content": "x"}], loader)
    with pytest.raises(ValueError, match="only accepted in user"):
        messages_from_openai([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": url}}]}], loader)
    with pytest.raises(ValueError, match="too many images"):
        messages_from_openai(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 3}], loader, max_images=2
        )
    with pytest.raises(ImageError, match="local image files are disabled"):
        messages_from_openai([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}], loader)


# ---------------------------------------------------------------- datasets


def test_example_problem_set_loads_with_readable_images():
    assert detect_format(EXAMPLES) == "problems"
    problems = list(load_problems(EXAMPLES))
    assert len(problems) == 16 and all(isinstance(p, Problem) for p in problems)
    assert [p.id for p in problems] == [f"arith-{k}" for k in range(1, 17)]
    for p in problems:
        assert p.source == "qvq-ray-arithmetic"  # our own generator's, nothing copied from a benchmark
        assert len(p.images) == 1 and Path(p.images[0].path).is_absolute()
        (data,) = prepare_problem_images(p.images, ModelConfig())
        assert decode_image(data).mode == "RGB"
        a, op, b = p.meta["expression"].split()
        assert str({"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]) == p.answer
        assert decode_image(load_image_bytes(p.images[0])).size == (224, 112)
    assert len(list(load_problems(EXAMPLES, limit=3))) == 3


def test_mathvision_adapter_on_shared_sample():
    mathvision = shared_data("mathvision")
    assert detect_format(mathvision) == "mathvision"
    problems = list(load_problems(mathvision))
    assert len(problems) == 50 and all(isinstance(p, Problem) for p in problems)
    assert sum(1 for p in problems if p.spec.choices) == 27
    for p in problems:
        assert p.source == "MathVision" and p.language == "en" and p.subject
        assert p.spec.answer_type == ("choice" if p.spec.choices else None)
        assert 1 <= p.meta["level"] <= 5 and "solution" in p.meta
        assert len(p.images) == 1 and Path(p.images[0].path).is_file()
        assert "<image1>" in p.question  # tags kept for the prompt
    by_id = {p.id: p for p in problems}
    assert by_id["207"].spec.choices[3] == "$108^{\\circ}$" and by_id["207"].answer == "D"
    assert by_id["14"].answer == "13" and by_id["14"].spec.choices == []
    # The JSONL file itself: detected by its fields, images resolved against the dataset root.
    file = mathvision / "data" / "test.jsonl"
    assert detect_format(file) == "mathvision"
    assert [p.images[0].path for p in load_problems(file)] == [p.images[0].path for p in problems]


def test_broken_rows_yield_load_errors_and_the_rest_loads(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(encode(Image.new("RGB", (28, 28))))
    lines = [
        json.dumps({"id": "ok1", "question": "Q1 <image1>", "images": ["pics/a.png"], "answer": 5, "extra_field": "x"}),
        '{"id": "broken", "question": ',
        json.dumps({"question": "no id"}),
        "",
        json.dumps({"id": 7, "question": "Q7", "choices": [1, 2], "images": [{"bytes": base64.b64encode(b"xyz").decode()}]}),
        json.dumps({"id": "noq"}),
        json.dumps({"id": "badimg", "question": "Q", "images": [{"url": "x"}]}),
    ]
    file = tmp_path / "set.jsonl"
    file.write_text("\n".join(lines) + "\n")
    rows = list(load_problems(file))
    assert len(rows) == 6  # one per non-blank line
    problems = [r for r in rows if isinstance(r, Problem)]
    errors = {r.ref: r.reason for r in rows if isinstance(r, LoadError)}
    assert [p.id for p in problems] == ["ok1", "7"]
    assert set(errors) == {"set.jsonl:2", "set.jsonl:3", "noq", "badimg"}
    assert "invalid JSON" in errors["set.jsonl:2"] and "'id'" in errors["set.jsonl:3"] and "'question'" in errors["noq"]
    ok1, seven = problems
    assert ok1.answer == "5" and ok1.meta == {"extra_field": "x"}
    assert ok1.images[0].path == str(tmp_path / "pics" / "a.png")  # absolute, not read yet
    assert seven.spec.choices == ["1", "2"] and seven.images[0].bytes == b"xyz"
    # A MathVision file with a broken line behaves the same.
    mv_lines = [
        json.dumps({"id": "1", "question": "A? <image1>", "options": [], "answer": "3", "solution": None,
                    "level": 1, "subject": "counting", "image": "images/1.jpg"}),
        "{oops",
        json.dumps({"id": "2", "options": ["A", "B"], "level": 2, "image": "images/2.jpg", "question": ""}),
    ]
    mv_file = tmp_path / "mv.jsonl"
    mv_file.write_text("\n".join(mv_lines))
    assert detect_format(mv_file) == "mathvision"
    mv_rows = list(load_problems(mv_file))
    assert isinstance(mv_rows[0], Problem) and mv_rows[0].images[0].path == str(tmp_path / "images" / "1.jpg")
    assert isinstance(mv_rows[1], LoadError) and mv_rows[1].ref == "mv.jsonl:2"
    assert isinstance(mv_rows[2], LoadError) and mv_rows[2].ref == "2"


def test_parquet_in_problem_row_form_round_trips(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    originals = [
        Problem(id="a", question="Q <image1>", images=[ImageRef(bytes=b"PNGDATA")], choices=["1", "2"], answer="A",
                answer_type="choice", source="s", meta={"level": 3}),
        Problem(id="b", question="R", images=[ImageRef(path="rel/b.png")], tolerance=0.01),
    ]
    table = pa.Table.from_pylist([problem_to_row(p) for p in originals], schema=problem_schema())
    pq.write_table(table, tmp_path / "problems.parquet")
    assert detect_format(tmp_path) == "problems"
    loaded = list(load_problems(tmp_path))
    assert loaded[0] == originals[0]
    assert loaded[1].images[0].path == str(tmp_path / "rel" / "b.png") and loaded[1].spec.tolerance == [0.01]


def test_load_problems_rejects_unknown_paths_and_formats(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_problems(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("id,question\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_problems(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="unknown problem format"):
        load_problems(tmp_path / "x.csv", format="mmmu-typo")


def test_url_fetch_when_allowed_enforces_size_status_and_redirects(tmp_path, monkeypatch):
    """Real HTTP against a local server; only the public-address check is switched off to reach it."""
    import http.server
    import threading

    import qvq_ray.images as images

    data = encode(Image.new("RGB", (28, 28), "white"))
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "big.png").write_bytes(data + b"\x00" * 5000)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def do_GET(self):
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/a.png")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    checked = []
    monkeypatch.setattr(images, "check_public_host", lambda host, port=None: checked.append(host))
    try:
        limits = ImageLimits(allow_urls=True, max_bytes=len(data) + 100, url_timeout_s=5)
        assert load_image_bytes(f"{base}/a.png", limits=limits) == data
        assert load_image_bytes(f"{base}/hop", limits=limits) == data
        assert len(checked) == 3  # every hop's host is checked
        with pytest.raises(ImageError, match="max_bytes"):
            load_image_bytes(f"{base}/big.png", limits=limits)
        with pytest.raises(ImageError, match="HTTP 404"):
            load_image_bytes(f"{base}/missing.png", limits=limits)
        with pytest.raises(ImageError, match="too many redirects"):
            load_image_bytes(f"{base}/hop", limits=limits.model_copy(update={"max_redirects": 0}))
    finally:
        server.shutdown()
        server.server_close()


def test_a_problems_images_share_one_decoded_pixel_budget_checked_from_headers():
    from qvq_ray.config import ImageLimits, ModelConfig
    from qvq_ray.images import ImageError, prepare_problem_images

    limits = ImageLimits(max_total_pixels_decoded=3 * 112 * 56)
    from tests.conftest import png_bytes

    image = png_bytes("1 + 2")  # 112 x 56
    assert len(prepare_problem_images([image] * 3, ModelConfig(), limits=limits)) == 3
    with pytest.raises(ImageError, match="max_total_pixels_decoded"):
        prepare_problem_images([image] * 4, ModelConfig(), limits=limits)


def test_a_big_grey_page_is_resized_quickly_and_to_the_same_pixels():
    import io
    import time

    from PIL import Image

    from qvq_ray.config import ModelConfig
    from qvq_ray.images import prepare_image

    page = Image.new("L", (4000, 3000), 255)
    page.paste(0, (1000, 1000, 3000, 2000))
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    model = ModelConfig()
    started = time.perf_counter()
    out = Image.open(io.BytesIO(prepare_image(buffer.getvalue(), min_pixels=model.min_pixels, max_pixels=model.max_pixels)))
    assert time.perf_counter() - started < 2.0
    assert out.mode == "RGB" and out.width * out.height <= model.max_pixels
    assert out.getpixel((out.width // 2, out.height // 2)) == (0, 0, 0) and out.getpixel((2, 2)) == (255, 255, 255)
