#!/usr/bin/env python3
"""A miniature DSR-Bench for the evaluation tests: tests/fixtures/dsr/.

    python3 tools/reference/make_dsr_fixture.py

Writes `benchmark.parquet` in the DSR-Bench layout (videoID, question, options as list<string>,
answer, type), the same rows as `benchmark_generic.jsonl` with other column names (video,
candidates, gt, category) for the generic mode, and `videos/` with short test videos made by the
ffmpeg command line (testsrc pattern), plus deliberately bad ones: a corrupt mp4 (truncated), an
empty (0-byte) file and a text file named .mp4. One row's video is missing and one row has no
options. Needs: pyarrow, ffmpeg on PATH. Deterministic.
"""
import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/dsr"

OPTS4 = lambda a, b, c, d: [f"A. {a}", f"B. {b}", f"C. {c}", f"D. {d}"]

ROWS = [
    ("v_walk", "How far did the person walk?", OPTS4("1 m", "3 m", "5 m", "10 m"), "B", "abs_dis"),
    ("v_walk", "In which direction does the person move?", OPTS4("left", "right", "towards the camera", "away"), "A", "abs_dir"),
    ("v_walk", "Is the person faster than the dog?", OPTS4("yes", "no", "same speed", "cannot tell"), "C", "rel_spd"),
    ("v_walk", "How many chairs are in the room?", OPTS4("one", "two", "three", "four"), "D", "non_temp"),
    ("v_pan", "Where is the car relative to the tree?", OPTS4("left", "right", "behind", "in front"), "B", "rel_dir"),
    ("v_pan", "Which moves faster, the ball or the cart?", OPTS4("ball", "cart", "same", "neither moves"), "A", "abs_spd_comp"),
    ("v_pan", "Where will the ball be next?", OPTS4("left", "right", "up", "down"), "D", "rel_dir_pred"),
    ("v_missing", "What does the camera do?", OPTS4("pan left", "pan right", "dolly in", "static"), "A", "abs_dir"),
    ("v_corrupt", "What does the camera do?", OPTS4("pan left", "pan right", "dolly in", "static"), "B", "abs_ori"),
    ("v_empty", "What does the camera do?", OPTS4("pan left", "pan right", "dolly in", "static"), "C", "rel_ori"),
    ("v_walk", "Describe the scene.", [], "A", "abs_spd"),
    ("v_text", "What does the camera do?", OPTS4("pan left", "pan right", "dolly in", "static"), "D", "rel_dis"),
    ("v_pan", "Which way is the car facing?", OPTS4("north", "south", "east", "west"), "B. south", "abs_ori"),
    ("v_pan", "Is the cart facing the ball?", OPTS4("yes", "no", "partly", "unknown"), "c", "rel_ori"),
]


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    vids = OUT / "videos"
    vids.mkdir(exist_ok=True)
    # 3.0 s and 4.5 s clips, 10 fps, 112x84, mpeg4 in mp4 (small, decodable everywhere).
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=112x84:rate=10:duration=3", "-c:v", "mpeg4", "-q:v", "8", str(vids / "v_walk.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=112x84:rate=10:duration=4.5", "-c:v", "mpeg4", "-q:v", "8", str(vids / "v_pan.mp4"))
    data = (vids / "v_walk.mp4").read_bytes()
    (vids / "v_corrupt.mp4").write_bytes(data[: len(data) // 3])
    (vids / "v_empty.mp4").write_bytes(b"")
    (vids / "v_text.mp4").write_text("this is not a video\n")

    table = pa.table({
        "videoID": [r[0] for r in ROWS],
        "question": [r[1] for r in ROWS],
        "options": pa.array([r[2] for r in ROWS], type=pa.list_(pa.string())),
        "answer": [r[3] for r in ROWS],
        "type": [r[4] for r in ROWS],
    })
    pq.write_table(table, OUT / "benchmark.parquet", compression="snappy")
    with open(OUT / "benchmark_generic.jsonl", "w") as f:
        for r in ROWS:
            f.write(json.dumps({"video": r[0], "question": r[1], "candidates": r[2], "gt": r[3], "category": r[4]}) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
