"""Builds MMMU_DEV_VAL.tsv, a tiny VLMEvalKit-style TSV, from the shared MMMU sample.

Five rows of MMMU validation (subject Math) in VLMEvalKit's layout, images shrunk to thumbnails
so the file stays a few KB. It exercises what a loader must handle: a single base64 image, a
multi-image row (a Python-literal list of base64 strings, with options that are themselves
`<image k>`), a row whose image cell is the `index` of another row (VLMEvalKit's reuse rule; the
row is the first question with its options rotated, as circular evaluation writes them), an open
question with a list of acceptable answers and no options (empty option cells), and five options.
Written with pandas' `to_csv(sep="\\t", index=False)`, as VLMEvalKit writes its TSVs.

The TSV holds MMMU's questions, options and (thumbnailed) images, so it is not committed: the
tests build it at test time into a temporary folder (the `vlmevalkit_tsv` fixture in
tests/conftest.py) from `../shared/data/mmmu` beside the repository (or `$QVQ_RAY_SHARED_DATA`).
To look at one: `.venv/bin/python tests/data/datasets/make_vlmevalkit_tsv.py OUT_DIR`.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[3]
MMMU_PARQUET = "mmmu/Math/validation-00000-of-00001.parquet"  # under the shared data folder
THUMBNAIL = (40, 40)


def default_source() -> Path:
    shared = os.environ.get("QVQ_RAY_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data"
    return Path(shared) / MMMU_PARQUET


def thumbnail_b64(png: bytes) -> str:
    image = Image.open(io.BytesIO(png)).convert("L")
    image.thumbnail(THUMBNAIL)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def build(source: Path, out_dir: Path) -> Path:
    """Write `out_dir/MMMU_DEV_VAL.tsv` from the MMMU validation parquet `source`; returns its path."""
    rows = {r["id"]: r for r in pq.read_table(source).to_pylist()}
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
    out_dir.mkdir(parents=True, exist_ok=True)
    tsv = out_dir / "MMMU_DEV_VAL.tsv"
    pd.DataFrame(out).to_csv(tsv, sep="\t", index=False)
    return tsv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write MMMU_DEV_VAL.tsv into (not the repository)")
    parser.add_argument("--source", type=Path, default=default_source(), help="MMMU validation parquet (Math)")
    args = parser.parse_args(argv)
    tsv = build(args.source, args.out_dir)
    print(f"wrote {tsv} ({tsv.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
