#!/usr/bin/env python3
"""Writes tests/fixtures/vlm4d/: a few rows of VLM4D's two question files laid out as VLM4D
publishes them (docs/benchmark-formats.md §1; VLM4D data/real_mc.json, data/synthetic_mc.json):
top-level JSON arrays of {id, video, question_type, question, choices, answer} with `video` an
absolute URL under the Hugging Face dataset, `choices` an object A-D, `answer` the right choice's
text (an integer where the choices are integers), and tiny videos at the paths the URLs name
inside a copy of the dataset. The questions are ours; field names, types and path forms are
VLM4D's. `expected.json` holds each row's category by acc_final_statistics.py's rule (ported
below), so the Rust side is checked against it.

Run: python3 tools/reference/make_vlm4d_fixture.py   (needs the ffmpeg CLI; ~2 s)
"""
import json
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "vlm4d")
BASE = "https://huggingface.co/datasets/shijiezhou/VLM4D/resolve/main/"

REAL = [
    {"id": "validation_3", "video": BASE + "videos_real/davis/bus.mp4", "question_type": "multiple-choice",
     "question": "How many buses move to the left?", "choices": {"A": 1, "B": 2, "C": 3, "D": 0}, "answer": 1},
    {"id": "validation_160", "video": BASE + "videos_real/davis/city-ride.mp4", "question_type": "multiple-choice",
     "question": "From the camera perspective, which direction are the cyclists moving toward?",
     "choices": {"A": "not moving", "B": "left", "C": "right", "D": "backwards"}, "answer": "left"},
    {"id": "validation_950", "video": BASE + "videos_real/ego4d/kitchen.mp4", "question_type": "multiple-choice",
     "question": "Which way does the camera wearer turn?",
     "choices": {"A": "left", "B": "right", "C": " not turning", "D": "backwards"}, "answer": " not turning"},
]
SYNTHETIC = [
    {"id": "validation_1", "video": BASE + "videos_synthetic/synth_001.mp4", "question_type": "multiple-choice",
     "question": "Which direction is the dragon flying?",
     "choices": {"A": "left", "B": "right", "C": "no dragon there", "D": "up"}, "answer": "no dragon there"},
    {"id": "validation_2", "video": BASE + "videos_synthetic/synth_002.mp4", "question_type": "multiple-choice",
     "question": "Which direction is the car driving?",
     "choices": {"A": "toward the camera", "B": "away from the camera", "C": "left", "D": "right"},
     "answer": "away from the camera"},
]


def is_fp(a):
    """acc_final_statistics.py: a synthetic 'false positive' row."""
    a = str(a).strip().lower()
    return a == "no" or a.startswith("no ")


def category(file, row):
    """acc_final_statistics.py's split: real by id number (exo <= 922), synthetic by FP."""
    n = int(row["id"].split("_")[-1])
    if file == "real_mc.json":
        return "real_exo" if n <= 922 else "real_ego"
    return "synthetic_fp" if is_fp(row["answer"]) else "synthetic_directional"


def main():
    # Only this script's files: judge.json beside them is make_vlm4d_judge_fixture.py's.
    shutil.rmtree(os.path.join(OUT, "dataset"), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for i, (name, rows) in enumerate([("real_mc.json", REAL), ("synthetic_mc.json", SYNTHETIC)]):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(rows, f, indent=4)
        expected[name] = {r["id"]: {"category": category(name, r),
                                    "letter": next(k for k, v in r["choices"].items() if v == r["answer"])}
                          for r in rows}
        for j, r in enumerate(rows):
            path = os.path.join(OUT, "dataset", r["video"][len(BASE):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                 f"testsrc=size=32x32:rate=4:duration=2,hue=h={30 * (3 * i + j)}",
                 "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1", "-fflags", "+bitexact",
                 "-flags:v", "+bitexact", path],
                check=True)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"wrote {len(REAL)} real and {len(SYNTHETIC)} synthetic rows to {OUT}")


if __name__ == "__main__":
    main()
