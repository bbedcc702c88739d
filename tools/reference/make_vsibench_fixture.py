#!/usr/bin/env python3
"""Writes tests/fixtures/vsibench/: a miniature VSI-Bench ("Thinking in Space") laid out as the
official release and its lmms-eval task expect it (docs/benchmark-formats.md §2):

* `test-00000-of-00001.parquet` with the columns of HF `nyu-visionx/VSI-Bench` (split `test`):
  id int64, dataset string, scene_name string, question_type string, question string,
  options list<string> (lettered "A. text"; null for numerical-answer rows), ground_truth string
  (a letter for multiple choice, a number as text for numerical answers). 10 rows, one per
  question_type, 3 scenes. The question texts are ours. The schema is written explicitly, with
  a `huggingface` schema-metadata entry in the form `datasets` writes (modelled on the `datasets`
  convention; the real file's metadata was not seen).
* `<dataset>/<scene_name>.mp4`: tiny test videos at the path the official task builds under its
  cache dir, `<HF_HOME>/vsibench/<dataset>/<scene_name>.mp4`
  (thinking-in-space@51e089c lmms_eval/tasks/vsibench/utils.py:48-56, vsibench.yaml:4).
* `expected.json`: the rows in file order, the float64 MRA thresholds, ~60 per-sample scores and
  one aggregate, all computed by the port below of the official scorer
  (vision-x-nyu/thinking-in-space@51e089c3ae69b9435e9489058610f5b3964c56a8,
  lmms_eval/tasks/vsibench/utils.py; "utils.py:N" below means that file). No expected number is
  typed by hand.

Notes on the official code that the expectations keep:
* Only the first token of `pred.split(' ')` counts (a newline does not split), then
  `.rstrip('.')`, then `.strip()` (utils.py:81-82).
* NA: `to_float` turns anything `float()` rejects into None (utils.py:101-106); `None - x` then
  raises TypeError, which becomes 0.0 (utils.py:116-119). `float()` accepts "inf", "nan", "1e1",
  "1_000", "+2", full-width digits... ; inf and nan compare False, so they score 0.0. A ground
  truth of 0 would raise an uncaught ZeroDivisionError (no fixture row has one).
* The aggregate (utils.py:125-185) multiplies by 100 (`.item() * 100.`) and also returns the
  strings `tabulated_keys` / `tabulated_results`. `overall` is summed in the dict's insertion
  order (question types sorted by pandas groupby, the merged rel_direction last); that order is
  stored as `aggregate.overall_sum_order`.

Run: python3 tools/reference/make_vsibench_fixture.py   (needs pyarrow, pandas, numpy, ffmpeg; ~2 s)
Deterministic: two runs give byte-identical files.
"""
import json
import os
import shutil
import subprocess
from collections import OrderedDict
from functools import partial  # used by eval() of METRICS_FOR_NA, as in utils.py:6,33,115-117

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "vsibench")

# --------------------------------------------------------------------------------------------
# Port of thinking-in-space@51e089c lmms_eval/tasks/vsibench/utils.py (scoring parts only).
# --------------------------------------------------------------------------------------------
MCA_QUESTION_TYPES = [  # utils.py:13-20
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
]
NA_QUESTION_TYPES = [  # utils.py:21-26
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
]
METRICS_FOR_MCA = {"accuracy": "exact_match"}  # utils.py:28-30
METRICS_FOR_NA = {  # utils.py:32-34
    "MRA:.5:.95:.05": "partial(mean_relative_accuracy, start=.5, end=.95, interval=.05)",
}


def fuzzy_matching(pred):  # utils.py:81-82
    return pred.split(' ')[0].rstrip('.').strip()


def exact_match(pred, target):  # utils.py:84-85
    return 1. if pred.lower() == target.lower() else 0.


def abs_dist_norm(pred, target):  # utils.py:87-88
    return abs(pred - target) / target


def mean_relative_accuracy(pred, target, start, end, interval):  # utils.py:90-94
    num_pts = (end - start) / interval + 2
    conf_intervs = np.linspace(start, end, int(num_pts))
    accuracy = abs_dist_norm(pred, target) <= 1 - conf_intervs
    return accuracy.mean()


WORST_CASE_FOR_METRICS = {"accuracy": 0., "MRA:.5:.95:.05": 0.}  # utils.py:96-99


def to_float(pred):  # utils.py:101-106
    try:
        pred = float(pred)
    except BaseException as e:
        pred = None
    return pred


def vsibench_process_results(doc, results):  # utils.py:108-123
    doc['prediction'] = results[0]
    if doc['question_type'] in MCA_QUESTION_TYPES:
        for key, value in METRICS_FOR_MCA.items():
            doc[key] = eval(value)(fuzzy_matching(doc['prediction']), doc['ground_truth'])
    elif doc['question_type'] in NA_QUESTION_TYPES:
        for key, value in METRICS_FOR_NA.items():
            try:
                doc[key] = eval(value)(to_float(fuzzy_matching(doc['prediction'])), to_float(doc['ground_truth']))
            except TypeError:
                doc[key] = WORST_CASE_FOR_METRICS[key]
    else:
        raise ValueError(f"Unknown question type: {doc['question_type']}")
    return {"vsibench_score": doc}


def vsibench_aggregate_results(results):  # utils.py:125-185 (eval_logger calls left out)
    results = pd.DataFrame(results)
    output = {}
    for question_type, question_type_indexes in results.groupby('question_type').groups.items():
        per_question_type = results.iloc[question_type_indexes]
        if question_type in MCA_QUESTION_TYPES:
            for metric in METRICS_FOR_MCA.keys():
                output[f"{question_type}_{metric}"] = per_question_type[metric].mean()
        elif question_type in NA_QUESTION_TYPES:
            for metric in METRICS_FOR_NA.keys():
                if metric == 'success_rate':
                    output[f"{question_type}_{metric}"] = per_question_type[metric].mean()
                else:
                    output[f"{question_type}_{metric}"] = per_question_type[metric].mean()
        else:
            raise ValueError(f"Unknown question type: {question_type}")

    if 'object_rel_direction_easy_accuracy' in output:
        output['object_rel_direction_accuracy'] = sum([
            output.pop('object_rel_direction_easy_accuracy'),
            output.pop('object_rel_direction_medium_accuracy'),
            output.pop('object_rel_direction_hard_accuracy'),
        ]) / 3.

    sum_order = list(output.keys())  # not in the official code: recorded for the fixture
    output['overall'] = sum([_ for _ in output.values()]) / len(output)

    results = OrderedDict()
    results["overall"] = output["overall"].item() * 100.
    for question_type in [
        "object_counting",
        "object_abs_distance",
        "object_size_estimation",
        "room_size_estimation",
        "object_rel_distance",
        "object_rel_direction",
        "route_planning",
        "obj_appearance_order",
    ]:
        for metric in [
            "accuracy",
            "MRA:.5:.95:.05",
        ]:
            key = f"{question_type}_{metric}"
            if key in output:
                results[key] = output[key].item() * 100.

    tabulated_keys = ", ".join([_ for _ in results.keys()])
    tabulated_results = ", ".join([f"{_:.3f}" for _ in results.values()])
    results["tabulated_keys"] = tabulated_keys
    results["tabulated_results"] = tabulated_results
    return results, sum_order


def score(question_type, ground_truth, reply):
    """The per-sample score vsibench_process_results stores for `reply` as the prediction."""
    doc = {"question_type": question_type, "ground_truth": ground_truth}
    vsibench_process_results(doc, [reply])
    key = "accuracy" if question_type in MCA_QUESTION_TYPES else "MRA:.5:.95:.05"
    return float(doc[key])


# --------------------------------------------------------------------------------------------
# Fixture data (our own questions; field names, types and formats are VSI-Bench's).
# --------------------------------------------------------------------------------------------
SCENES = [("arkitscenes", "41069025"), ("scannet", "scene0191_00"), ("scannetpp", "09c1414f1b")]

ROWS = [  # (id, dataset, scene_name, question_type, question, options or None, ground_truth)
    (12, "arkitscenes", "41069025", "object_rel_direction_easy",
     "If I am standing by the sofa and facing the tv, is the lamp to my left or my right? "
     "The directions refer to the quadrants of a Cartesian plane (if I am standing at the origin "
     "and facing along the positive y-axis).",
     ["A. left", "B. right"], "B"),
    (347, "scannet", "scene0191_00", "object_rel_direction_medium",
     "If I am standing by the desk and facing the door, is the bin to my left, right, or back? "
     "An object is to my back if I would have to turn at least 135 degrees in order to face it.",
     ["A. left", "B. right", "C. back"], "C"),
    (957, "arkitscenes", "41069025", "object_rel_direction_hard",
     "If I am standing by the stove and facing the sofa, is the tv to my front-left, front-right, "
     "back-left, or back-right?",
     ["A. front-left", "B. back-right", "C. back-left", "D. front-right"], "A"),
    (1520, "scannetpp", "09c1414f1b", "object_rel_distance",
     "Measuring from the closest point of each object, which of these objects (chair, table, bed, "
     "door) is the closest to the lamp?",
     ["A. chair", "B. table", "C. bed", "D. door"], "D"),
    (2210, "scannet", "scene0191_00", "route_planning",
     "You are a robot beginning at the desk facing the door. You want to navigate to the sink. "
     "You will perform the following actions (Note: for each [please fill in], choose either "
     "'turn back,' 'turn left,' or 'turn right.'): 1. Go forward until the door 2. [please fill "
     "in] 3. Go forward until the sink. You have reached the final destination.",
     ["A. Turn Back", "B. Turn Left", "C. Turn Right"], "B"),
    (3105, "scannetpp", "09c1414f1b", "obj_appearance_order",
     "What will be the first-time appearance order of the following categories in the video: "
     "chair, lamp, bed, door?",
     ["A. chair, lamp, bed, door", "B. lamp, chair, door, bed", "C. door, bed, chair, lamp",
      "D. bed, door, lamp, chair"], "C"),
    (956, "arkitscenes", "41069025", "object_abs_distance",
     "Measuring from the closest point of each object, what is the direct distance between the "
     "sofa and the stove (in meters)?",
     None, "1.9"),
    (4001, "scannet", "scene0191_00", "object_counting",
     "How many chair(s) are in this room?",
     None, "3"),
    (4550, "scannetpp", "09c1414f1b", "object_size_estimation",
     "What is the length of the longest dimension (length, width, or height) of the bed, measured "
     "in centimeters?",
     None, "87"),
    (5012, "arkitscenes", "41069025", "room_size_estimation",
     "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the "
     "size of the combined space.",
     None, "21.4"),
]

# (question_type, ground_truth, reply)
SCORING = [
    # multiple choice: exact_match(fuzzy_matching(reply), gt)
    ("object_rel_direction_hard", "A", "A"),
    ("object_rel_direction_hard", "A", "a"),
    ("object_rel_direction_hard", "A", "A."),
    ("object_rel_direction_hard", "A", "A..."),
    ("object_rel_direction_hard", "A", "A. front-left"),
    ("object_rel_direction_hard", "A", "A.\nBecause the tv is ahead of me."),
    ("object_rel_direction_hard", "A", "A\n"),
    ("object_rel_direction_hard", "A", " A"),
    ("object_rel_direction_hard", "A", "The answer is A"),
    ("object_rel_direction_hard", "A", "(A)"),
    ("object_rel_direction_hard", "A", "B"),
    ("object_rel_direction_hard", "A", ""),
    ("route_planning", "B", "b. Turn Left"),
    # numerical answer: mean_relative_accuracy(to_float(fuzzy_matching(reply)), float(gt))
    ("object_abs_distance", "1.9", "1.9"),
    ("object_abs_distance", "1.9", "1.9m"),
    ("object_abs_distance", "1.9", "1.9 m"),
    ("object_abs_distance", "1.9", "2.0"),
    ("object_abs_distance", "2.0", "2.1"),
    ("object_abs_distance", "2.0", "1.9"),
    ("object_abs_distance", "2.0", "2.2"),
    ("object_abs_distance", "2.0", "1.8"),
    ("object_abs_distance", "2.0", "2.5"),
    ("object_abs_distance", "2.0", "1.0"),
    ("object_abs_distance", "2.0", "3.0"),
    ("object_abs_distance", "2.0", "0.9"),
    ("object_abs_distance", "2.0", "3.01"),
    ("object_abs_distance", "2.0", "0"),
    ("object_abs_distance", "2.0", "-2.0"),
    ("object_abs_distance", "2.0", "-1.9"),
    ("object_abs_distance", "2.0", "2.0."),
    ("object_abs_distance", "2.0", "2.0.\nIt is close."),
    ("object_abs_distance", "2.0", "2\n"),
    ("object_abs_distance", "2.0", " 2"),
    ("object_abs_distance", "2.0", ""),
    ("object_abs_distance", "2.0", "two"),
    ("object_abs_distance", "2.0", "2,0"),
    ("object_abs_distance", "1.0", "1.2"),
    ("object_abs_distance", "1.0", "0.8"),
    ("room_size_estimation", "10", "8"),
    ("room_size_estimation", "10", "12"),
    ("room_size_estimation", "10", "7"),
    ("room_size_estimation", "10", "9.5"),
    ("room_size_estimation", "10", "11"),
    ("room_size_estimation", "10", "6.5"),
    ("room_size_estimation", "10", "13.5"),
    ("room_size_estimation", "10", "5"),
    ("room_size_estimation", "10", "15"),
    ("room_size_estimation", "10", "4.9"),
    ("room_size_estimation", "10", "1e1"),
    ("room_size_estimation", "10", "1_0"),
    ("room_size_estimation", "10", "inf"),
    ("room_size_estimation", "10", "nan"),
    ("room_size_estimation", "10", "-inf"),
    ("object_counting", "3", "3"),
    ("object_counting", "3", "3."),
    ("object_counting", "3", "+3"),
    ("object_counting", "3", "\uff13"),
    ("object_counting", "3", "4"),
    ("object_counting", "3", "2"),
    ("object_counting", "3", "three"),
    ("object_size_estimation", "87", "100"),
    ("object_size_estimation", "87", "70 cm"),
]

AGG_REPLIES = {
    12: "B",
    347: "A",
    957: "A. front-left",
    1520: "d",
    2210: "The answer is B",
    3105: "C",
    956: "2.1",
    4001: "3",
    4550: "100",
    5012: "21.4m",
}

HF_FEATURES = {"info": {"features": {
    "id": {"dtype": "int64", "_type": "Value"},
    "dataset": {"dtype": "string", "_type": "Value"},
    "scene_name": {"dtype": "string", "_type": "Value"},
    "question_type": {"dtype": "string", "_type": "Value"},
    "question": {"dtype": "string", "_type": "Value"},
    "options": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
    "ground_truth": {"dtype": "string", "_type": "Value"},
}}}


def write_parquet(path):
    schema = pa.schema([
        pa.field("id", pa.int64()),
        pa.field("dataset", pa.string()),
        pa.field("scene_name", pa.string()),
        pa.field("question_type", pa.string()),
        pa.field("question", pa.string()),
        pa.field("options", pa.list_(pa.string())),
        pa.field("ground_truth", pa.string()),
    ], metadata={b"huggingface": json.dumps(HF_FEATURES).encode()})
    cols = list(zip(*ROWS))
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)
    pq.write_table(table, path, compression="snappy")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    write_parquet(os.path.join(OUT, "test-00000-of-00001.parquet"))

    for i, (dataset, scene) in enumerate(SCENES):
        path = os.path.join(OUT, dataset, scene + ".mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc=size=32x32:rate=4:duration=2,hue=h={120 * i}",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1", "-fflags", "+bitexact",
             "-flags:v", "+bitexact", path],
            check=True)

    # Read the table back the way a datasets-based loader sees it (lists, None for null options).
    back = pq.read_table(os.path.join(OUT, "test-00000-of-00001.parquet")).to_pylist()
    rows = [{
        "id": r["id"],
        "kind": "choice" if r["question_type"] in MCA_QUESTION_TYPES else "number",
        "question_type": r["question_type"],
        "ground_truth": r["ground_truth"],
        "video": f"{r['dataset']}/{r['scene_name']}.mp4",
        "options": r["options"] if r["options"] is not None else [],
    } for r in back]

    num_pts = (.95 - .5) / .05 + 2  # utils.py:91 with the METRICS_FOR_NA arguments
    thresholds = [float(x) for x in 1 - np.linspace(.5, .95, int(num_pts))]

    scoring = [{"question_type": t, "ground_truth": g, "reply": r, "score": score(t, g, r)}
               for t, g, r in SCORING]

    docs = []
    for r in back:
        doc = dict(r)
        vsibench_process_results(doc, [AGG_REPLIES[r["id"]]])
        docs.append(doc)
    metrics, sum_order = vsibench_aggregate_results(docs)
    per_row = {str(d["id"]): float(d["accuracy"] if d["question_type"] in MCA_QUESTION_TYPES
                                   else d["MRA:.5:.95:.05"]) for d in docs}

    expected = {
        "source": "vision-x-nyu/thinking-in-space@51e089c3ae69b9435e9489058610f5b3964c56a8 "
                  "lmms_eval/tasks/vsibench/utils.py (ported in tools/reference/make_vsibench_fixture.py)",
        "rows": rows,
        "mra_thresholds": thresholds,
        "scoring": scoring,
        "aggregate": {
            "replies": {str(k): v for k, v in AGG_REPLIES.items()},
            "per_row_scores": per_row,
            "overall_sum_order": sum_order,
            "metrics": dict(metrics),
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(ROWS)} rows, {len(SCORING)} scoring cases and {len(SCENES)} videos to {OUT}")


if __name__ == "__main__":
    main()
