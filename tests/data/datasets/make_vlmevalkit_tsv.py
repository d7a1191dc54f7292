"""Builds vlmevalkit/MMMU_DEV_VAL.tsv, a tiny VLMEvalKit-style TSV, from the shared MMMU sample.

Run from the repository root: `.venv/bin/python tests/data/datasets/make_vlmevalkit_tsv.py`.
Five rows of MMMU validation (subject Math) in VLMEvalKit's layout, images shrunk to thumbnails
so the file stays a few KB. It exercises what a loader must handle: a single base64 image, a
multi-image row (a Python-literal list of base64 strings, with options that are themselves
`<image k>`), a row whose image cell is the `index` of another row (VLMEvalKit's reuse rule; the
row is the first question with its options rotated, as circular evaluation writes them), an open
question with a list of acceptable answers and no options (empty option cells), and five options.
Written with pandas' `to_csv(sep="\\t", index=False)`, as VLMEvalKit writes its TSVs.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

SHARED = Path("/work/shared/data/mmmu/Math/validation-00000-of-00001.parquet")
OUT = Path(__file__).resolve().parent / "vlmevalkit" / "MMMU_DEV_VAL.tsv"
THUMBNAIL = (40, 40)


def thumbnail_b64(png: bytes) -> str:
    image = Image.open(io.BytesIO(png)).convert("L")
    image.thumbnail(THUMBNAIL)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    rows = {r["id"]: r for r in pq.read_table(SHARED).to_pylist()}
    out = []

    def add(index: int, native: dict, options: list[str], answer: str, image: str, image_path: str) -> None:
        row = {"index": index, "question": native["question"]}
        for letter in "ABCDE":
            row[letter] = options["ABCDE".index(letter)] if "ABCDE".index(letter) < len(options) else None
        row.update(
            answer=answer,
            category="Math",
            **{"l2-category": "Science"},
            split="validation",
            id=native["id"],
            image=image,
            image_path=image_path,
        )
        out.append(row)

    def images(native: dict) -> list[str]:
        return [thumbnail_b64(native[f"image_{k}"]["bytes"]) for k in range(1, 8) if native[f"image_{k}"]]

    one = rows["validation_Math_1"]
    add(1, one, ["1", "2", "Not exist"], "C", images(one)[0], "1.png")
    three = rows["validation_Math_3"]
    add(2, three, ["<image 1>", "<image 2>", "<image 3>"], "B", str(images(three)), "['2--1.png', '2--2.png', '2--3.png']")
    add(3, one, ["Not exist", "1", "2"], "A", "1", "1.png")  # reuses row 1's image; options rotated
    open_q = rows["validation_Math_15"]
    add(4, open_q, [], open_q["answer"], images(open_q)[0], "4.png")
    five = rows["validation_Math_22"]
    add(5, five, ["60", "132", "157", "194", "215"], "D", images(five)[0], "5.png")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(out).to_csv(OUT, sep="\t", index=False)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} rows)")


if __name__ == "__main__":
    main()
