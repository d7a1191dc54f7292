"""Generate the problems of `examples/problems/`: an image shows "37 + 48 = ?", the gold is 85.

They give the example set problems whose answer is certain and whose image is all the model
needs, so a wrong answer points at the model or the pipeline, not at a hard question. The run
is deterministic (fixed seed, Pillow's built-in font): rerunning rewrites the same rows and
images, and a larger --count keeps the first rows as they were. Rows of other sources in
problems.jsonl are kept as they are.

    python examples/make_arithmetic_problems.py [--out examples/problems] [--count 16]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SOURCE = "qvq-ray-arithmetic"
SEED = 20241224  # QVQ-72B-Preview's release date
QUESTION = "What is the result of the calculation shown in the image?"
SIZE = (224, 112)  # width x height: 8 x 4 Qwen2-VL patches of 28 px, 32 visual tokens


def make_expressions(count: int, seed: int = SEED) -> list[tuple[str, int]]:
    """(expression, value) pairs cycling +, -, x (a plain x: the bundled font has no ×); small integer answers."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        op = "+-x"[i % 3]
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if op == "-" and b > a:
            a, b = b, a
        if op == "x":
            b = rng.randint(2, 9)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        out.append((f"{a} {op} {b}", value))
    return out


def render(expression: str, path: Path) -> None:
    """Black text on white, centred, in Pillow's bundled font (same pixels on every machine)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    text = f"{expression} = ?"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (SIZE[0] - (right - left)) / 2 - left
    y = (SIZE[1] - (bottom - top)) / 2 - top
    draw.text((x, y), text, fill="black", font=font)
    image.save(path, format="PNG")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "problems", help="problem set folder")
    parser.add_argument("--count", type=int, default=16, help="number of problems")
    args = parser.parse_args(argv)

    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    problems_file = out / "problems.jsonl"
    kept = []
    if problems_file.exists():
        for line in problems_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line).get("source") != SOURCE:
                kept.append(line)

    rows = []
    for i, (expression, value) in enumerate(make_expressions(args.count), start=1):
        image = f"images/arith-{i}.png"
        render(expression, out / image)
        rows.append(
            {
                "id": f"arith-{i}",
                "question": QUESTION,
                "images": [image],
                "answer": str(value),
                "answer_type": "integer",
                "source": SOURCE,
                "subject": "arithmetic",
                "language": "en",
                "meta": {"expression": expression, "seed": SEED},
            }
        )
    lines = kept + [json.dumps(row, ensure_ascii=False) for row in rows]
    problems_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} {SOURCE} problems ({len(kept)} other rows kept) to {problems_file}")


if __name__ == "__main__":
    main()
