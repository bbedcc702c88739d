#!/usr/bin/env python3
"""Writes tests/fixtures/dsr_scoring/reference_cases.json (answer-extraction cases) and
dsr_eval_20260426_231001.jsonl + _summary.json (the same cases as a result file in dsr_eval.py's
own per-sample and summary format): scored by a
Python port of 4DThinker's `evaluation/dsr_eval.py` cascade (digest: shared/reference/eval.md §7),
bugs included, so the Rust `reference` scoring mode can be checked against it.

The port follows §7.2-7.3 line by line:
  1. extract_answer_from_tags: first `<answer>\\s*(.*?)\\s*</answer>` (DOTALL | IGNORECASE),
     stripped; the whole output, stripped, when there is none;
  2. extract_option_letter (DSR_Suite's VideoMME `extract_characters_regex`): the literal,
     case-sensitive prefixes removed in order; more than 10 words and no [ABCD]: ""; else the first
     [ABCD] anywhere (case-sensitive), or "";
  3. nothing: step 2 on the whole raw output;
  4. nothing: the latent strings replaced by a space, whitespace collapsed, step 2 once more;
  gt = str(answer).strip().upper(), its first character when longer; hit = pred == gt.

Run: python3 tools/reference/make_dsr_scoring_fixture.py   (standard library only, < 1 s)
"""
import json
import os
import re

PREFIXES = [
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer:",
    "Option:",
]
LATENT = ["<|latent_start|>", "<|latent_end|>", "<|latent_pad|>"]


def extract_answer_from_tags(text):
    m = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL | re.IGNORECASE)
    if m:
        return m.group(1).strip()
    return text.strip()


def extract_option_letter(s):
    s = s.strip()
    for p in PREFIXES:
        s = s.replace(p, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    m = re.search(r"[ABCD]", s)
    return m[0] if m else ""


def reference_pred(raw):
    pred = extract_option_letter(extract_answer_from_tags(raw))
    if not pred:
        pred = extract_option_letter(raw)
    if not pred:
        cleaned = raw
        for t in LATENT:
            cleaned = cleaned.replace(t, " ")
        pred = extract_option_letter(" ".join(cleaned.split()))
    return pred


def reference_gt(answer):
    g = str(answer).strip().upper()
    return g[0] if len(g) > 1 else g


# (what the case exercises, raw model output, ground-truth answer as the parquet holds it)
CASES = [
    ("a letter in the answer tags", "<think>\nThe camera pans.\n</think>\n<answer>\nB\n</answer>", "B"),
    ("letter and option text", "<answer>C. Truck Left</answer>", "C"),
    ("only the first answer span counts", "<answer>A</answer> then <answer>B</answer>", "B"),
    ("tags in any case", "<ANSWER> D </Answer>", "d"),
    ("'Answer:' is removed before the search", "<answer>Answer: B</answer>", "B"),
    ("'The best answer is' is removed", "The best answer is C.", "C"),
    ("'The answer' is removed after 'The answer is'", "The answer is D", "D"),
    ("'Best option:' is removed", "<answer>Best option: B</answer>", "B"),
    ("prefixes are case-sensitive", "<answer>answer: C</answer>", "C"),
    ("option text: 'Dolly In' reads as D (false hit)", "<answer>Dolly In</answer>", "D"),
    ("option text: 'Dolly In' when the truth is B (false miss)", "<answer>Dolly In</answer>", "B"),
    ("option text without A-D falls back to the reasoning's first capital", "<think>A red ball rolls.</think><answer>moving left</answer>", "C"),
    ("lower-case letters never match", "<answer>b</answer>", "B"),
    ("no tags: the whole output", "I think it is C because the camera moves.", "C"),
    ("no tags, first capital in the reasoning", "Camera moves left, so the answer is A", "A"),
    ("empty answer span: fallback over the whole output", "<think>Stay still.</think><answer></answer>", "D"),
    ("more than 10 words without A-D gives nothing", "<answer>the object keeps moving to the left of the frame while the camera stays</answer>", "A"),
    ("more than 10 words with a capital: the capital", "<answer>the object keeps moving to the left of the frame, option B clearly</answer>", "B"),
    ("no letter at all", "<answer>left</answer>", "A"),
    ("latent tokens", "<|latent_start|><|latent_pad|><|latent_pad|><|latent_end|><answer>C</answer>", "C"),
    ("latent tokens, nothing else", "<|latent_start|><|latent_pad|><|latent_end|>", "A"),
    ("ground truth longer than one character", "<answer>A</answer>", "a. moving left"),
    ("ground truth with spaces", "<answer>B</answer>", "  b "),
    ("an unclosed answer tag is not a span", "<answer>B", "B"),
    ("letters inside words after the span", "<answer>none</answer> Done", "D"),
]


SUBTASK_ORDER = [
    ("abs_dis", "Abs Dis"), ("abs_dir", "Abs Dir"), ("abs_ori", "Abs Ori"), ("abs_spd", "Abs Spd"),
    ("abs_spd_comp", "Abs Spd Comp"), ("abs_dir_pred", "Abs Dir Pred"), ("rel_dis", "Rel Dis"),
    ("rel_dir", "Rel Dir"), ("rel_ori", "Rel Ori"), ("rel_spd", "Rel Spd"),
    ("rel_spd_comp", "Rel Spd Comp"), ("rel_dir_pred", "Rel Dir Pred"), ("non_temp", "Non-Temp Based"),
]
OPTIONS = ["A. Pan Left", "B. Truck Right", "C. Stay", "D. Dolly In"]


def reference_results(cases):
    """A per-sample JSONL and summary as dsr_eval.py writes them (eval.md §9.2-9.3): one line per
    case, in case order, with the keys in the script's order; the summary by
    aggregate_subtask_metrics (per-key totals over evaluated samples, macro = mean of non-empty)."""
    lines, per = [], {}
    for i, c in enumerate(cases):
        key = SUBTASK_ORDER[i % len(SUBTASK_ORDER)][0]
        rec = {"index": i, "video_id": f"video_{i:03d}", "video_path": f"/data/videos/video_{i:03d}.mp4",
               "question": "How does the camera move?\n\n" + "\n".join(OPTIONS),
               "gt": c["gt"], "pred": c["pred"], "answer": c["pred"], "raw": c["raw"],
               "hit": c["hit"], "subtask_type": key}
        lines.append(json.dumps(rec, ensure_ascii=False))
        t = per.setdefault(key, [0, 0])
        t[0] += 1
        t[1] += c["hit"]
    acc = {col: (per[k][1] / per[k][0] if k in per and per[k][0] else None) for k, col in SUBTASK_ORDER}
    vals = [a for a in acc.values() if a is not None]
    correct = sum(c["hit"] for c in cases)
    summary = {
        "total": len(cases), "eval_count": len(cases), "skipped": 0, "correct": correct,
        "accuracy": correct / len(cases),
        "subtask_accuracy": acc,
        "subtask_correct": {col: per.get(k, [0, 0])[1] for k, col in SUBTASK_ORDER},
        "subtask_total": {col: per.get(k, [0, 0])[0] for k, col in SUBTASK_ORDER},
        "subtask_macro_avg": sum(vals) / len(vals) if vals else 0.0,
        "subtask_columns_order": [col for _, col in SUBTASK_ORDER] + ["Avg"],
    }
    return lines, summary


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_dir = os.path.join(root, "tests", "fixtures", "dsr_scoring")
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for what, raw, answer in CASES:
        pred = reference_pred(raw)
        gt = reference_gt(answer)
        cases.append({"what": what, "raw": raw, "answer": answer, "pred": pred, "gt": gt,
                      "hit": int(pred == gt)})
    with open(os.path.join(out_dir, "reference_cases.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_dsr_scoring_fixture.py",
                   "source": "4DThinker evaluation/dsr_eval.py (shared/reference/eval.md section 7)",
                   "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    lines, summary = reference_results(cases)
    stem = os.path.join(out_dir, "dsr_eval_20260426_231001")
    with open(stem + ".jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    with open(stem + "_summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    print(f"wrote {len(cases)} cases and a reference-format result file")


if __name__ == "__main__":
    main()
