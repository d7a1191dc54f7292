"""Visual arithmetic for the trained tiny Qwen2-VL: two numbers written in a column, + or -.

The image (112 x 56 pixels: 8 Qwen2-VL visual tokens) shows the first number right-aligned on
top and the operator with the second number below, black on a mid-gray background (blank patches
sit near zero after Qwen2-VL's CLIP normalisation; on white the model learns to ignore the image),
one character per 14-pixel patch column:

        97
      - 73

and the question asks for the result. The gold answer is the integer (24). The model is trained to
answer in QVQ's shape: a worked line, then the final answer boxed (see `target_text`).

Problems are (a, op, b) triples: a, b in 0..99, op '+' or '-', and a >= b for '-' (no negative
results): 15,050 in all. A fixed seed splits them into three disjoint sets: `test` (200, shipped in
examples/arithmetic-test/ and measured by the batch job), `dev` (256, watched during training) and
`train` (the rest). A triple of the test or dev split never occurs in training. Each triple has
one rendering and everything here is deterministic: rerunning rewrites the same rows and the same
PNG bytes (for a given Pillow: the digits are drawn in Pillow's bundled font).

    python examples/make_visual_arithmetic.py [--out examples/arithmetic-test]

The training script (pipelines/train_tiny.py) imports this file for the train split and renderer.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path
from typing import Iterator

SOURCE = "qvq-ray-visual-arithmetic"
SPLIT_SEED = 20241224  # QVQ-72B-Preview's release date
TEST_SIZE = 200
DEV_SIZE = 256
QUESTION = "What is the result of the calculation shown in the image?"
SIZE = (112, 56)  # width x height: 8 x 4 patches of 14 px -> 4 x 2 = 8 visual tokens after the 2x2 merge
CELL = 14  # one character per patch column
FONT_SIZE = 22
OPS = ("+", "-")
BACKGROUND = 128  # mid-gray

Triple = tuple[int, str, int]


def value(triple: Triple) -> int:
    a, op, b = triple
    return a + b if op == "+" else a - b


def all_triples() -> list[Triple]:
    """Every problem of the task, in a fixed order."""
    out: list[Triple] = []
    for a in range(100):
        for b in range(100):
            out.append((a, "+", b))
            if a >= b:
                out.append((a, "-", b))
    return out


def splits(seed: int = SPLIT_SEED) -> dict[str, list[Triple]]:
    """Disjoint test / dev / train lists of triples (deterministic for the seed)."""
    triples = all_triples()
    random.Random(seed).shuffle(triples)
    return {
        "test": triples[:TEST_SIZE],
        "dev": triples[TEST_SIZE : TEST_SIZE + DEV_SIZE],
        "train": triples[TEST_SIZE + DEV_SIZE :],
    }


def target_text(triple: Triple) -> str:
    """The answer the model learns, in QVQ's shape: a worked line, then the boxed final answer."""
    a, op, b = triple
    result = value(triple)
    return f"{a}{op}{b}={result}\n\n**Final Answer**\n\n\\boxed{{{result}}}"


def render(triple: Triple):
    """The problem's image (a PIL RGB image)."""
    from PIL import Image, ImageDraw, ImageFont

    a, op, b = triple
    image = Image.new("RGB", SIZE, (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    last = 6  # both numbers end in patch column 6 (right-aligned, one digit per column)

    def put(text: str, col: int, row: int) -> None:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = col * CELL + (CELL - (right - left)) / 2 - left
        y = row * 2 * CELL + (2 * CELL - (bottom - top)) / 2 - top
        draw.text((x, y), text, fill=(0, 0, 0), font=font)

    for row, number in ((0, a), (1, b)):
        digits = str(number)
        for i, digit in enumerate(digits):
            put(digit, last - len(digits) + 1 + i, row)
    put(op, 3, 1)
    return image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def train_stream(seed: int, split: str = "train") -> Iterator[Triple]:
    """Endless triples drawn uniformly from a split, deterministic for the seed."""
    triples = splits()[split]
    rng = random.Random(seed)
    while True:
        yield triples[rng.randrange(len(triples))]


def problem_row(index: int, triple: Triple, image: str, split: str) -> dict:
    a, op, b = triple
    return {
        "id": f"varith-{split}-{index:03d}",
        "question": QUESTION,
        "images": [image],
        "answer": str(value(triple)),
        "answer_type": "integer",
        "source": SOURCE,
        "subject": "arithmetic",
        "language": "en",
        "meta": {"a": a, "op": op, "b": b, "split": split, "split_seed": SPLIT_SEED},
    }


def write_split(out: Path, split: str = "test") -> list[dict]:
    """Write `split` as a problem set: out/problems.jsonl and out/images/*.png."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, triple in enumerate(splits()[split]):
        image = f"images/{split}-{index:03d}.png"
        (out / image).write_bytes(png_bytes(render(triple)))
        rows.append(problem_row(index, triple, image, split))
    (out / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "arithmetic-test", help="problem set folder")
    parser.add_argument("--split", choices=["test", "dev"], default="test")
    args = parser.parse_args(argv)
    rows = write_split(args.out, args.split)
    print(f"wrote {len(rows)} {args.split} problems to {args.out / 'problems.jsonl'}")


if __name__ == "__main__":
    main()
