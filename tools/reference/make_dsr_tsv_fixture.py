#!/usr/bin/env python3
"""Writes tests/fixtures/dsr_tsv/: a few rows of VLMEvalKit's DSRBench.tsv, laid out as VLMEvalKit
publishes it (docs/benchmark-formats.md §4; vlmeval/dataset/dsrbench.py): a pandas
`to_csv(sep="\\t", index=False)` table with the columns the dataset class reads, `index`, `video`,
`question`, `options` (a Python list literal, as pandas writes a list), `answer` (a letter) and
`task_type` (one of DSR's 13 keys), and tiny videos under `raw_data/dsr-bench/`, the folder the
class unpacks `dsr-bench.zip` into. Content is ours (camera questions on test patterns); field
names, types and path forms are VLMEvalKit's.

Run: python3 tools/reference/make_dsr_tsv_fixture.py   (needs pandas and the ffmpeg CLI; ~2 s)
"""
import os
import shutil
import subprocess

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "dsr_tsv")

# (index, video file, question, options, answer, task_type). Indices are VLMEvalKit's own row
# keys, not 0..n: results must be keyed by them.
ROWS = [
    (1201, "koala_0001.mp4", "How does the camera move during the video?",
     ["A. Pan Left", "B. Pan Right", "C. Stay", "D. Dolly In"], "B", "rel_dir"),
    (1202, "koala_0002.mp4", 'Is the "red" square getting closer to the camera?',
     ["A. Getting Closer", "B. Getting Farther", "C. Same Distance", "D. First Closer, Then Farther"], "C", "abs_dis"),
    (1207, "koala_0001.mp4", "Which way does the pattern move,\tseen from the camera?",
     ["A. Left", "B. Right", "C. Up", "D. Down"], "A", "abs_dir"),
    (1300, "koala_0003.mp4", "What is the speed pattern of the pattern?",
     ["A. Constant Speed", "B. Speeding Up", "C. Slowing Down", "D. Stationary"], "D", "abs_spd"),
]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    videos = os.path.join(OUT, "raw_data", "dsr-bench", "videos")
    os.makedirs(videos)
    for i, name in enumerate(sorted({r[1] for r in ROWS})):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
             f"testsrc=size=32x32:rate=4:duration=2,hue=h={40 * i}",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1", "-fflags", "+bitexact",
             "-flags:v", "+bitexact", os.path.join(videos, name)],
            check=True)
    df = pd.DataFrame({
        "index": [r[0] for r in ROWS],
        "video": [f"videos/{r[1]}" for r in ROWS],
        "question": [r[2] for r in ROWS],
        "options": [r[3] for r in ROWS],
        "answer": [r[4] for r in ROWS],
        "task_type": [r[5] for r in ROWS],
    })
    df.to_csv(os.path.join(OUT, "DSRBench.tsv"), sep="\t", index=False)
    print(f"wrote {len(ROWS)} rows to {OUT}")


if __name__ == "__main__":
    main()
