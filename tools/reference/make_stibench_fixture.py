#!/usr/bin/env python3
"""Writes tests/fixtures/stibench/: a miniature STI-Bench laid out as its official scripts read it
(docs/benchmark-formats.md §3; MINT-SJTU/STI-Bench@43ddebea5e386072cc9f95f4b3cdbe81fbc390a3,
files openai_test.py and opensource_test.py, cited below as file:line):

* `qa.parquet` with the columns the scripts read: Video (file name under the video dir), ID
  (int64), Task (one of the 8 task names), Question, Candidates (a struct with string fields
  A..E, which pandas hands back as a dict; openai_test.py:98 iterates `.items()`), Answer (a
  letter), time_start / time_end (float64 seconds), Source. Written from a pandas DataFrame
  through pyarrow with an explicit schema, so the file carries pandas metadata as a
  `df.to_parquet()` file does. 9 rows: one per task plus one more; two rows share a video with
  different windows; one row's window is the whole 8 s video (time_start 0). The questions are
  ours; the real file's dtypes were not seen.
* `videos/<Video>`: 32x32, 4 fps, 8 s testsrc clips (libx264, yuv420p, a keyframe every second),
  named like the real ones (indoor ScanNet `scene0001_00.mp4`, desktop `001234.mp4`, outdoor
  Waymo `segment-1_camera_FRONT.mp4`).
* `expected.json`: per row (file order, as `pd.read_parquet(...).to_dict("records")` gives it)
  the candidates in `.items()` order, the window, the scene by opensource_test.py's
  `scene_type(Video)` (the parquet has no scene column, so :203 stores None and :237 fills it
  from the file name) and the question line as openai_test.py:99-101 builds it
  (`f"From {ts} seconds to {te} seconds. " + Question`, i.e. Python's str() of the float); `que`
  is the whole `question` string of openai_test.py:99-102 (with the "A text" candidate lines).
  `scoring` holds replies run through opensource_test.py's extraction (:66-79, :194) and
  correctness rule (:240-243); `aggregate` one reply per row and the report numbers of
  :305-307 (fractions, not percent; the report prints them with `:.2%`), plus the report text.
  per_task / per_scene are maps; their order (and the tie order in report_txt) is whatever
  pandas' `sort_values(ascending=False)` gives and carries no meaning.

The official correctness rule looks at the LAST character of the extracted answer. An empty
extraction (an empty or all-whitespace reply) makes `model_out[-1]` raise IndexError inside
`df.apply`, so the official analysis stage crashes; those scoring cases carry
`"correct": false` and `"official_raises": "IndexError"`. The aggregate has no such reply.

Run: python3 tools/reference/make_stibench_fixture.py   (needs pandas, pyarrow, ffmpeg; ~3 s)
Deterministic: two runs give byte-identical files.
"""
import json
import os
import re
import shutil
import subprocess

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "stibench")

# --------------------------------------------------------------------------------------------
# Port of STI-Bench@43ddebe opensource_test.py (answer extraction, scene, correctness, report).
# --------------------------------------------------------------------------------------------
ANSWER_PATTERNS = [  # opensource_test.py:66-73
    r"\(([A-E])\)",                                # (A)
    r"Ans\s*=\s*['\"]?([A-E])['\"]?",              # Ans='C'
    r"Answer\s*[:=]\s*([A-E])",                    # Answer: B
    r"Option\s+([A-E])",                           # Option D
    r"\b([A-E])\s*(?:is|was)\s*correct",           # A is correct
    r"\b([A-E])[\.\)]\s*$",                        # C.  /  D)
]


def extract_answer(text):  # opensource_test.py:75-79
    for pat in ANSWER_PATTERNS:
        m = re.search(pat, text, flags=re.IGNORECASE | re.MULTILINE)
        if m: return m.group(1).upper()
    return None


def scene_type(filename):  # opensource_test.py:84-91
    if "camera" in filename:
        return "outdoor"
    if filename.startswith("scene"):
        return "indoor"
    if filename.split(".")[0].isdigit() and len(filename.split(".")[0]) == 6:
        return "desktop"
    return "unknown"


def model_out_of(decoded):  # opensource_test.py:194
    return extract_answer(decoded) or decoded.strip()


def correct_of(model_out, ans):  # opensource_test.py:240-243 (the lambda's body)
    return (model_out[-1] in "ABCDE") and (model_out[-1] == ans)


def report(results):  # opensource_test.py:231-243, 305-318 (plots left out)
    df = pd.DataFrame(results)
    if "scene" not in df.columns:
        df["scene"] = df["id"].apply(scene_type)
    else:
        df["scene"] = df["scene"].fillna(df["id"].apply(scene_type))
    df["correct"] = df.apply(
        lambda r: (r["model_out"][-1] in "ABCDE") and (r["model_out"][-1] == r["ans"]),
        axis=1,
    )
    overall_acc = df["correct"].mean()
    task_acc = df.groupby("Task")["correct"].mean().sort_values(ascending=False)
    scene_acc = df.groupby("scene")["correct"].mean().sort_values(ascending=False)
    report = [
        "=== Performance Report ===",
        f"Total samples: {len(df)}",
        f"Overall accuracy: {overall_acc:.2%}\n",
        "Accuracy by task:",
    ] + [f"  {t}: {a:.2%}" for t, a in task_acc.items()] + [
        "\nAccuracy by scene:",
    ] + [f"  {s}: {a:.2%}" for s, a in scene_acc.items()]
    report_txt = "\n".join(report)
    return {
        "overall": float(overall_acc),
        "per_task": {t: float(a) for t, a in task_acc.items()},
        "per_scene": {s: float(a) for s, a in scene_acc.items()},
        "correct": [bool(c) for c in df["correct"]],
        "report_txt": report_txt,
    }


# --------------------------------------------------------------------------------------------
# Fixture data.
# --------------------------------------------------------------------------------------------
VIDEOS = ["scene0001_00.mp4", "001234.mp4", "segment-1_camera_FRONT.mp4"]
DURATION = 8

ROWS = [  # Video, ID, Task, Question, Candidates A-E, Answer, time_start, time_end, Source
    ("scene0001_00.mp4", 0, "Dimensional Measurement",
     "What is the height of the wooden cabinet next to the door?",
     ["0.85m", "1.20m", "1.02m", "0.64m", "1.48m"], "C", 0.0, 8.0, "ScanNet"),
    ("scene0001_00.mp4", 1, "Spatial Relation",
     "At the end of the clip, is the chair to the left or to the right of the camera?",
     ["Left", "Right", "Front", "Behind", "Up"], "A", 2.0, 5.5, "ScanNet"),
    ("scene0001_00.mp4", 2, "3D Video Grounding",
     "Where is the center of the desk lamp in the first frame of the window, in the camera frame "
     "(x right, y down, z forward)?",
     ["(0.31, -0.12, 1.40)", "(-0.50, 0.05, 2.10)", "(0.02, 0.44, 0.95)", "(1.10, -0.30, 3.05)",
      "(-0.20, -0.25, 1.75)"], "E", 1.5, 6.25, "ScanNet"),
    ("segment-1_camera_FRONT.mp4", 0, "Displacement & Path Length",
     "How far does the white van travel in this window?",
     ["12.4m", "18.9m", "7.3m", "25.0m", "15.6m"], "B", 1.0, 7.0, "Waymo"),
    ("segment-1_camera_FRONT.mp4", 1, "Speed & Acceleration",
     "What is the average speed of the ego vehicle?",
     ["3.2m/s", "5.8m/s", "8.1m/s", "1.4m/s", "10.5m/s"], "D", 3.25, 6.75, "Waymo"),
    ("scene0001_00.mp4", 3, "Ego-Centric Orientation",
     "By how many degrees does the camera turn, and in which direction?",
     ["45 degrees left", "90 degrees right", "30 degrees right", "120 degrees left",
      "10 degrees left"], "B", 4.0, 8.0, "ScanNet"),
    ("segment-1_camera_FRONT.mp4", 2, "Trajectory Description",
     "Which best describes the trajectory of the cyclist?",
     ["Goes straight", "Turns left, then straight", "Turns right", "Stops, then turns left",
      "Reverses"], "C", 0.5, 7.5, "Waymo"),
    ("001234.mp4", 0, "Pose Estimation",
     "What is the rotation of the mug about the vertical axis at the end of the window, relative "
     "to its start?",
     ["15 degrees", "60 degrees", "0 degrees", "95 degrees", "180 degrees"], "A", 2.0, 4.0,
     "Omni6DPose"),
    ("001234.mp4", 1, "Dimensional Measurement",
     "What is the diameter of the mug's opening?",
     ["104.97cm", "8.20cm", "12.75cm", "6.10cm", "107.59cm"], "B", 1.0, 3.0, "Omni6DPose"),
]

# (reply, answer letter of the question it answers)
SCORING = [
    ("B", "B"),
    ("(B)", "B"),
    ("(b)", "B"),
    ("The answer is (C), because (B) is too far.", "C"),
    ("Answer: D. Not (C).", "D"),
    ("Ans='C'", "C"),
    ("Ans = d", "D"),
    ("Answer: c", "C"),
    ("answer=E", "E"),
    ("Option D", "D"),
    ("option b is my choice", "B"),
    ("No option explains this fully; I choose B", "B"),
    ("E is correct", "E"),
    ("I think a was correct.", "A"),
    ("The answer: B is wrong, D is correct", "D"),
    ("Looking at the motion, the object moves away, so B.", "B"),
    ("B.\nBecause it moves away.", "B"),
    ("D)", "D"),
    ("A) 3.5 m", "A"),
    ("I pick C", "C"),
    ("I pick c", "C"),
    ("C: 1.02m", "C"),
    ("", "A"),
    ("   \n", "A"),
    ("B   \n", "B"),
    ("B.  ", "B"),
    ("<answer>B</answer>", "B"),
    ("The correct option is B", "B"),
    ("The answer is B", "B"),
    ("F", "A"),
]

# one reply per row position (no empty reply: the official analysis would crash on it)
AGG_REPLIES = ["C", "(B)", "Answer: E", "B.", "I pick D", "b", "Option C", "<answer>A</answer>",
               "The answer is B"]


def write_videos():
    vdir = os.path.join(OUT, "videos")
    os.makedirs(vdir)
    for i, name in enumerate(VIDEOS):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc=size=32x32:rate=4:duration={DURATION},hue=h={120 * i}",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "4", "-keyint_min", "4",
             "-sc_threshold", "0", "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
             os.path.join(vdir, name)],
            check=True)


def write_parquet(path):
    letters = ["A", "B", "C", "D", "E"]
    df = pd.DataFrame({
        "Video": [r[0] for r in ROWS],
        "ID": [r[1] for r in ROWS],
        "Task": [r[2] for r in ROWS],
        "Question": [r[3] for r in ROWS],
        "Candidates": [dict(zip(letters, r[4])) for r in ROWS],
        "Answer": [r[5] for r in ROWS],
        "time_start": [r[6] for r in ROWS],
        "time_end": [r[7] for r in ROWS],
        "Source": [r[8] for r in ROWS],
    })
    schema = pa.schema([
        pa.field("Video", pa.string()),
        pa.field("ID", pa.int64()),
        pa.field("Task", pa.string()),
        pa.field("Question", pa.string()),
        pa.field("Candidates", pa.struct([pa.field(k, pa.string()) for k in letters])),
        pa.field("Answer", pa.string()),
        pa.field("time_start", pa.float64()),
        pa.field("time_end", pa.float64()),
        pa.field("Source", pa.string()),
    ])
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="snappy")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    write_videos()
    qa = os.path.join(OUT, "qa.parquet")
    write_parquet(qa)

    # Read back exactly as both scripts do (openai_test.py:158-159, opensource_test.py:109-116).
    items = pd.read_parquet(qa).to_dict(orient="records")
    for it in items:
        it["file"] = it.get("Video", "unknown.mp4")
        if isinstance(it.get("Candidates"), str):
            try: it["Candidates"] = json.loads(it["Candidates"])
            except json.JSONDecodeError: it["Candidates"] = {}

    rows = []
    for it in items:
        ts, te = it["time_start"], it["time_end"]
        candidate_list = [f"{k} {v}" for k, v in it["Candidates"].items()]  # openai_test.py:98
        question = (  # openai_test.py:99-102
            f"From {it['time_start']} seconds to {it['time_end']} seconds. "
            + it["Question"] + "\n" + "\n".join(candidate_list)
        )
        rows.append({
            "Video": it["Video"],
            "ID": int(it["ID"]),
            "task": it["Task"],
            "answer": it["Answer"],
            "candidates": [[k, v] for k, v in it["Candidates"].items()],
            "window": [float(ts), float(te)],
            "scene": scene_type(it["Video"]),
            "prompt_question": f"From {ts} seconds to {te} seconds. " + it["Question"],
            "que": question,
        })

    scoring = []
    for reply, ans in SCORING:
        out = model_out_of(reply)
        case = {"reply": reply, "answer": ans, "extracted": out}
        try:
            case["correct"] = bool(correct_of(out, ans))
        except IndexError:
            case["correct"] = False
            case["official_raises"] = "IndexError"
        scoring.append(case)

    results = []
    for it, reply in zip(items, AGG_REPLIES):  # opensource_test.py:198-208
        results.append({
            "id": it["file"],
            "id_file": it.get("ID"),
            "time_s": it["time_start"],
            "time_e": it["time_end"],
            "scene": it.get("scene") or it.get("Scene"),
            "model_out": model_out_of(reply),
            "ans": it.get("Answer"),
            "Task": it.get("Task"),
        })
    # The official script round-trips the results through JSON before the analysis (:218-232).
    results = json.loads(json.dumps(results, ensure_ascii=False))
    rep = report(results)

    expected = {
        "source": "MINT-SJTU/STI-Bench@43ddebea5e386072cc9f95f4b3cdbe81fbc390a3 opensource_test.py, "
                  "openai_test.py (ported in tools/reference/make_stibench_fixture.py)",
        "rows": rows,
        "scoring": scoring,
        "aggregate": {
            "replies": {str(i): r for i, r in enumerate(AGG_REPLIES)},
            "extracted": {str(i): r["model_out"] for i, r in enumerate(results)},
            "correct": {str(i): c for i, c in enumerate(rep["correct"])},
            "overall": rep["overall"],
            "per_task": rep["per_task"],
            "per_scene": rep["per_scene"],
            "report_txt": rep["report_txt"],
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(ROWS)} rows, {len(SCORING)} scoring cases and {len(VIDEOS)} videos to {OUT}")


if __name__ == "__main__":
    main()
