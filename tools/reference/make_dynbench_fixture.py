#!/usr/bin/env python3
"""Writes tests/fixtures/dynbench/: a tiny Dyn-Bench ("Thinking in Dynamics", CVPR 2026) dataset
root laid out the way the official evaluation reads it (docs/benchmark-formats.md §5), plus
`expected.json` computed by a ported copy of the official code.

Source: Dynamics-X/Thinking-in-Dynamics@ed2704d5e1b84e995357cf011535e599eb292247 ("TID" below).
The mirror LilyYang0504/dyn-bench@b5b3ce8 has the same loader, prompt and QA scoring; its
eval.py adds an optional task.max_frames (np.linspace subsampling, default null = all frames).

Layout (TID utils/load_tasks.py:22-125; eval.py:32-42 also requires masks/ to exist):
  dataset/multi_json/<dataset>/<scene>_<suffix>.json   suffix = rsplit('_', 1)[1]
      QA suffixes cameraqa | qa | sceneqa: a JSON list of {question: str, options: [str], answer: str}
      mask suffixes cameramask | objmask | scenemask: a JSON object
          {object_id: {question, crop_caption, crop_category}}; object_id ends in _<n>
  dataset/frames/<dataset>/<scene>/frame_0000.jpg ...   (sorted(glob("frame_*.jpg")), all fed)
  dataset/masks/<dataset>/<scene>/frame_{i:04d}_obj{n}.png   (only read by mask tasks)
Two datasets (davis, sintel), three scenes (davis/dog, davis/dog_run, sintel/alley_1), 11 QA
questions over all three QA suffixes, one objmask file (2 objects) that a QA reader must skip,
6 frames of 32x32 JPEG per scene. The scene name `dog_run` makes its file sort between
`dog_qa.json` and `dog_sceneqa.json`, so the official order interleaves the two scenes.
The questions are ours. Field names, types and path forms are TID's. Whether `options` carry
"A. " prefixes in the real files is not confirmed; they do here, because the official prompt
asks for "the option's letter" and adds no letters itself (TID utils/run_qa_task.py:22-24).

expected.json:
  questions: in the official loader's order (load_all_tasks(root, "qa")); frames relative to the
             dataset root in the order fed to the model; prompt = the text run_qa_task builds
  mask_tasks: what load_all_tasks(root, "mask") yields (a QA reader must not yield these)
  scoring:   reply/answer pairs through compute_qa_accuracy (TID utils/cal_metrics.py:9-23)
  aggregate / aggregate_partial: the summary dict of TID eval.py:243-267 with task "qa"
No expected value is typed by hand.

Run: python3 tools/reference/make_dynbench_fixture.py   (needs numpy and pillow; <1 s;
     deterministic: two runs give byte-identical files)
"""
import glob
import json
import os
import shutil
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "dynbench")
DATA = os.path.join(OUT, "dataset")
N_FRAMES = 6
SIZE = 32

# ---------------------------------------------------------------------------------------------
# Ported from TID utils/load_tasks.py:10-19 and :22-134 (prints and colorama removed; the
# `continue` paths are kept, logic and iteration order unchanged).
TASK_CATEGORIES = {
    "cameramask": "Camera-Object",
    "cameraqa": "Camera-Object",
    "objmask": "Inter-Object",
    "qa": "Inter-Object",
    "scenemask": "Object-Scene",
    "sceneqa": "Object-Scene",
}
QA_TASK_SUFFIXES = ["cameraqa", "qa", "sceneqa"]
MASK_TASK_SUFFIXES = ["cameramask", "objmask", "scenemask"]


def load_all_tasks(datasets_dir, task_type="all"):
    samples = []
    multi_json_dir = datasets_dir / "multi_json"
    if not multi_json_dir.exists():
        return samples
    for dataset_dir in sorted(multi_json_dir.iterdir()):
        if not dataset_dir.is_dir():
            continue
        dataset_name = dataset_dir.name
        json_files = sorted(dataset_dir.glob("*.json"))
        for json_file in json_files:
            if "frame_sampling" in json_file.name:
                continue
            filename = json_file.stem
            parts = filename.rsplit('_', 1)
            if len(parts) != 2:
                continue
            scene_name = parts[0]
            task_suffix = parts[1]
            if task_suffix not in QA_TASK_SUFFIXES + MASK_TASK_SUFFIXES:
                continue
            is_segmentation = task_suffix in MASK_TASK_SUFFIXES
            if task_type == "qa" and is_segmentation:
                continue
            elif task_type == "mask" and not is_segmentation:
                continue
            category = TASK_CATEGORIES.get(task_suffix, "Unknown")
            frames_dir = datasets_dir / "frames" / dataset_name / scene_name
            if not frames_dir.exists():
                continue
            frame_paths = sorted(glob.glob(str(frames_dir / "frame_*.jpg")))
            if not frame_paths:
                frame_paths = sorted(glob.glob(str(frames_dir / "frame_*.png")))
            if not frame_paths:
                frame_paths = sorted(glob.glob(str(frames_dir / "*.jpg")))
            if not frame_paths:
                frame_paths = sorted(glob.glob(str(frames_dir / "*.png")))
            if not frame_paths:
                continue
            mask_dir = datasets_dir / "masks" / dataset_name / scene_name
            try:
                with open(json_file, 'r', encoding='utf-8') as f:
                    task_data = json.load(f)
            except Exception:
                continue
            if is_segmentation:
                for obj_id, obj_data in task_data.items():
                    samples.append({
                        "scene_name": scene_name, "dataset": dataset_name, "task_type": task_suffix,
                        "category": category, "is_segmentation": True, "frame_paths": frame_paths,
                        "mask_dir": str(mask_dir), "question": obj_data.get("question", ""),
                        "crop_caption": obj_data.get("crop_caption", ""),
                        "crop_category": obj_data.get("crop_category", ""),
                        "options": None, "answer": None, "object_id": obj_id,
                    })
            else:
                for idx, qa_item in enumerate(task_data):
                    samples.append({
                        "scene_name": scene_name, "dataset": dataset_name, "task_type": task_suffix,
                        "category": category, "is_segmentation": False, "frame_paths": frame_paths,
                        "mask_dir": None, "question": qa_item.get("question", ""),
                        "options": qa_item.get("options", []), "answer": qa_item.get("answer", ""),
                        "object_id": None, "question_idx": idx,
                    })
    return samples


# Ported from TID utils/run_qa_task.py:22-26 (the text every model branch receives; some
# branches then wrap it, e.g. InternVL prefixes "Frame{i+1}: <image>\n" per frame, :102-103).
def build_prompt(question, options):
    if options:
        options_text = "\n".join(options)
        base_question = f"{question}\n{options_text}\nAnswer with the option's letter from the given choices directly."
    else:
        base_question = question
    return base_question


# Ported verbatim from TID utils/cal_metrics.py:9-23.
def fuzzy_matching(pred: str) -> str:
    pred = pred.strip()
    if not pred:
        return ""
    first_char = pred.split()[0] if pred.split() else pred[0]
    return first_char.rstrip('.,;:!?').upper()


def compute_qa_accuracy(pred: str, gt: str) -> float:
    pred_letter = fuzzy_matching(pred)
    gt_letter = gt.strip().upper()
    return 1.0 if pred_letter == gt_letter else 0.0


# Ported from TID eval.py:144-145, :212-225 (QA branch) and :243-267 (summary).
def aggregate(tasks, replies, task_type="qa"):
    category_results = defaultdict(lambda: {"qa": [], "mask": []})
    for task, answer in zip(tasks, replies):
        accuracy = compute_qa_accuracy(answer, task["answer"])
        category_results[task["category"]]["qa"].append(accuracy)
    summary = OrderedDict()
    all_scores = []
    for category in ["Camera-Object", "Inter-Object", "Object-Scene"]:
        qa_scores = category_results[category]["qa"]
        mask_scores = category_results[category]["mask"]
        if qa_scores and task_type in ['qa', 'all']:
            qa_acc = np.mean(qa_scores) * 100
            summary[f"{category}_QA_Accuracy"] = qa_acc
            all_scores.append(qa_acc)
        if mask_scores and task_type in ['mask', 'all']:
            mask_jf = np.mean(mask_scores) * 100
            summary[f"{category}_Mask_J&F"] = mask_jf
            all_scores.append(mask_jf)
    if all_scores:
        overall = np.mean(all_scores)
        summary["Overall"] = overall
    counts = {c: len(category_results[c]["qa"]) for c in ["Camera-Object", "Inter-Object", "Object-Scene"]
              if category_results[c]["qa"]}
    return {k: float(v) for k, v in summary.items()}, counts


# ---------------------------------------------------------------------------------------------
# Our content.
def q(question, options, answer):
    return {"question": question, "options": options, "answer": answer}


QA_FILES = {
    ("davis", "dog", "cameraqa"): [
        q("Relative to the camera, how does the dog move during the clip?",
          ["A. Toward the camera", "B. Away from the camera", "C. Left across the frame", "D. It stays still"], "C"),
        q("Is the camera panning while the dog runs?",
          ["A. Yes, it pans to follow the dog", "B. No, the camera is static"], "A"),
    ],
    ("davis", "dog", "qa"): [
        q("Which object is closest to the dog at the end of the clip?",
          ["A. The ball", "B. The bench", "C. The fence", "D. The person"], "A"),
    ],
    ("davis", "dog", "sceneqa"): [
        q("Where in the scene does the dog stop?",
          ["A. On the grass", "B. Near the gate", "C. Beside the tree", "D. On the path"], "B"),
    ],
    ("davis", "dog_run", "qa"): [
        q("Does the dog overtake the cyclist?", ["A. Yes", "B. No", "C. Neither of them moves"], "B"),
        q("How does the distance between the two dogs change?",
          ["A. It grows", "B. It shrinks", "C. It stays about the same", "D. It first grows, then shrinks"], "D"),
    ],
    ("sintel", "alley_1", "cameraqa"): [
        q("By roughly how much does the camera turn over the clip?",
          ["A. About 0°", "B. About 45°", "C. About 90°", "D. About 180°"], "C"),
    ],
    ("sintel", "alley_1", "qa"): [
        q("Which character moves faster?",
          ["A. The girl", "B. The creature", "C. Both at the same speed", "D. Neither moves"], "A"),
    ],
    ("sintel", "alley_1", "sceneqa"): [
        q("What happens to the market stall during the clip?",
          ["A. It is knocked over", "B. It stays in place", "C. It is carried away", "D. It catches fire"], "B"),
        q("Which way does the girl run relative to the alley?",
          ["A. Deeper into the alley", "B. Out of the alley", "C. Across the alley", "D. She does not run",
           "E. Up the stairs"], "E"),
        q("Does the lighting of the scene change while the girl moves?", ["A. Yes", "B. No"], "B"),
    ],
}
MASK_FILES = {
    ("davis", "dog", "objmask"): {
        "object_1": {"question": "Segment the dog that runs toward the gate.",
                     "crop_caption": "a brown dog running on grass", "crop_category": "dog"},
        "object_2": {"question": "Segment the ball the dog chases.",
                     "crop_caption": "a small red ball", "crop_category": "ball"},
    },
}
SCENES = [("davis", "dog", (200, 120, 60)), ("davis", "dog_run", (60, 160, 90)),
          ("sintel", "alley_1", (70, 90, 200))]

# Model replies for the aggregate check, keyed by (dataset, scene, suffix, question_idx).
REPLIES = {
    ("davis", "dog", "cameraqa", 0): "C",
    ("davis", "dog", "cameraqa", 1): "B. No, the camera is static",
    ("davis", "dog", "qa", 0): "a",
    ("davis", "dog_run", "qa", 0): "B.",
    ("davis", "dog_run", "qa", 1): "The answer is D",
    ("davis", "dog", "sceneqa", 0): "B",
    ("sintel", "alley_1", "cameraqa", 0): "C) About 90°",
    ("sintel", "alley_1", "qa", 0): "A",
    ("sintel", "alley_1", "sceneqa", 0): "b, it stays in place",
    ("sintel", "alley_1", "sceneqa", 1): "E",
    ("sintel", "alley_1", "sceneqa", 2): "A",
}

# Reply/answer pairs for compute_qa_accuracy.
SCORING = [
    ("A", "A"), ("a", "A"), ("A.", "A"), ("D!?", "D"), ("A:", "A"), ("A;", "a"),
    ("  C, because the camera pans left", "C"), ("\tA\t", "A"), ("A\nThe dog runs left.", "A"),
    ("b", " b "), ("E", "E"), ("\u3000B", "B"), ("C\x1fD", "C"), ("\u00df", "SS"),
    ("B) The dog", "B"), ("(C)", "C"), ("**A**", "A"), ("The answer is B", "B"), ("Answer: A", "A"),
    ("A.B", "A"), ("AB", "A"), ("\uff41", "A"), ("<think>x</think> A", "A"),
    ("", "A"), ("   ", "A"), ("", ""),
]


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=4, ensure_ascii=False)
        f.write("\n")


def write_frames():
    for dataset, scene, color in SCENES:
        d = os.path.join(DATA, "frames", dataset, scene)
        os.makedirs(d)
        for i in range(N_FRAMES):
            im = Image.new("RGB", (SIZE, SIZE), (20 + 30 * i, 40, 60))
            x = 2 + 4 * i
            ImageDraw.Draw(im).rectangle([x, 10, x + 9, 19], fill=color)
            im.save(os.path.join(d, f"frame_{i:04d}.jpg"), format="JPEG", quality=90)
    for (dataset, scene, _), objs in MASK_FILES.items():
        d = os.path.join(DATA, "masks", dataset, scene)
        os.makedirs(d)
        for n, obj_id in enumerate(objs, start=1):
            assert obj_id.split("_")[-1] == str(n)  # cal_metrics.py:68-69 reads obj{n} from the id
            for i in range(N_FRAMES):
                m = Image.new("L", (SIZE, SIZE), 0)
                x = 2 + 4 * i if n == 1 else 28 - 4 * i
                ImageDraw.Draw(m).rectangle([x, 10 + 8 * (n - 1), x + 3, 13 + 8 * (n - 1)], fill=255)
                m.save(os.path.join(d, f"frame_{i:04d}_obj{n}.png"), format="PNG")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(DATA)
    for (dataset, scene, suffix), items in list(QA_FILES.items()) + list(MASK_FILES.items()):
        write_json(os.path.join(DATA, "multi_json", dataset, f"{scene}_{suffix}.json"), items)
    write_frames()

    root = Path(DATA)
    rel = lambda p: os.path.relpath(p, DATA).replace(os.sep, "/")
    tasks = load_all_tasks(root, "qa")
    questions = [{
        "dataset": t["dataset"], "scene": t["scene_name"], "task": t["task_type"],
        "question_idx": t["question_idx"], "category": t["category"], "question": t["question"],
        "options": t["options"], "answer": t["answer"], "frames": [rel(p) for p in t["frame_paths"]],
        "prompt": build_prompt(t["question"], t["options"]),
    } for t in tasks]
    masks = [{"dataset": t["dataset"], "scene": t["scene_name"], "task": t["task_type"],
              "category": t["category"], "object_id": t["object_id"], "question": t["question"],
              "mask_dir": rel(t["mask_dir"])} for t in load_all_tasks(root, "mask")]
    assert len(load_all_tasks(root, "all")) == len(tasks) + len(masks)

    keys = [(t["dataset"], t["scene_name"], t["task_type"], t["question_idx"]) for t in tasks]
    assert sorted(keys) == sorted(REPLIES)
    replies = [REPLIES[k] for k in keys]
    result, counts = aggregate(tasks, replies)
    keep = [i for i, t in enumerate(tasks) if t["category"] != "Object-Scene"]
    p_result, p_counts = aggregate([tasks[i] for i in keep], [replies[i] for i in keep])

    expected = {
        "source": "Dynamics-X/Thinking-in-Dynamics@ed2704d5e1b84e995357cf011535e599eb292247",
        "root": "dataset",
        "questions": questions,
        "mask_tasks": masks,
        "scoring": [{"reply": r, "answer": a, "correct": compute_qa_accuracy(r, a) == 1.0} for r, a in SCORING],
        "aggregate": {"replies": {str(i): r for i, r in enumerate(replies)}, "counts": counts, "result": result},
        "aggregate_partial": {"note": "only the questions whose category is not Object-Scene",
                              "replies": {str(i): replies[i] for i in keep}, "counts": p_counts,
                              "result": p_result},
    }
    write_json(os.path.join(OUT, "expected.json"), expected)
    print(f"wrote {len(questions)} QA questions, {len(masks)} mask tasks, "
          f"{N_FRAMES * len(SCENES)} frames to {OUT}")


if __name__ == "__main__":
    main()
