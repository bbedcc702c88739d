#!/usr/bin/env python3
"""Writes tests/fixtures/released/: a miniature of the released 4DThinker training data, laid out as
the released files are (`../shared/reference/preprocess.md` sections 1, 8.5, 9.5, 10 and 12):

- `data/dift_data.jsonl`: the DIFT schema `convert_format.py` writes (`id`, `text_input`,
  `text_output`, `image_input`, `image_output`), one `json.dumps(..., ensure_ascii=False)` per
  line, `<thinking>` already turned into `<think>`;
- `data/4drl_data.jsonl`: the 4DRL schema (`Question`, `A`-`D`, `Correct`, `frame_paths`,
  `Type`);
- paths `./data/processed_data/<video_id>/frames/frame_NNNN.jpg`, camera overlays
  `.../masked_static_overlays/static_fNNNN.jpg` and object overlays
  `.../masked_dynamic_overlays/dyn_fNNNN.jpg`, relative to the repository root (the folder that
  holds `data/`), JPEG images as the pipeline saves them.

    pip install pillow
    python3 tools/reference/make_released_data_fixture.py
"""
import json
import os

from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "released")
SIZE = (64, 48)
FRAMES = 6


def jpg(rel, colour):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", SIZE, colour).save(path, quality=90)


def frames(vid):
    rel = [f"./data/processed_data/{vid}/frames/frame_{i:04d}.jpg" for i in range(FRAMES)]
    for i, r in enumerate(rel):
        jpg(r, (40 * i, 80, 160))
    return rel


def overlays(vid, kind, prefix, idx):
    rel = [f"./data/processed_data/{vid}/{kind}/{prefix}_f{i:04d}.jpg" for i in idx]
    for r in rel:
        jpg(r, (200, 30, 30))
    return rel


def options(q, opts):
    return q + "\n\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCD", opts))


def main():
    dift, rl = [], []
    # A camera question (generate_camera_qa.py, section 8.5), converted (section 10).
    vid = "0a1b2c3d-cam"
    cam_opts = ["Pan Left and Dolly In", "Pan Right and Dolly In", "Pan Right and Dolly Out", "Stay"]
    dift.append({
        "id": f"{vid}_1->4",
        "text_input": options("How does the camera move between 1s and 4s?", cam_opts),
        "text_output": "<think>\nThe background slides to the left while it grows, so I mentally visualize a "
        "static patch of the scene from <output_image> to <output_image> and it moves left and gets "
        "larger.\n</think>\n<answer>\nB. Pan Right and Dolly In\n</answer>",
        "image_input": frames(vid),
        "image_output": overlays(vid, "masked_static_overlays", "static", [1, 4]),
    })
    rl.append({"Question": "How does the camera move between 1s and 4s?", "A": cam_opts[0],
               "B": cam_opts[1], "C": cam_opts[2], "D": cam_opts[3], "Correct": "B",
               "frame_paths": dift[-1]["image_input"], "Type": "rel_dir"})
    # Object questions (generate_dynamic_qa.py, section 9.5).
    vid = "4e5f6a7b-dyn"
    dir_opts = ["Moving Right", "Moving Left", "Moving Left-Up", "Moving Left-Down"]
    shown = frames(vid)
    dyn = overlays(vid, "masked_dynamic_overlays", "dyn", [0, 2, 5])
    for suffix, q in [("direct", "As seen from the camera, which way does the person move?"),
                      ("bbox", "At 2s, an object is located within bounding box [12,10,30,40]. As seen "
                               "from the camera, which way does it move?")]:
        dift.append({
            "id": f"{vid}_dynamic_{suffix}",
            "text_input": options(q, dir_opts),
            "text_output": "<think>\nThe person drifts toward the left edge, so I mentally visualize it "
            "from <output_image> to <output_image> to <output_image> and it keeps moving left.\n"
            "</think>\n<answer>\nB. Moving Left\n</answer>",
            "image_input": shown,
            "image_output": dyn,
        })
        rl.append({"Question": q, "A": dir_opts[0], "B": dir_opts[1], "C": dir_opts[2],
                   "D": dir_opts[3], "Correct": "B", "frame_paths": shown, "Type": "abs_dir"})
    os.makedirs(os.path.join(ROOT, "data"), exist_ok=True)
    for name, rows in [("dift_data.jsonl", dift), ("4drl_data.jsonl", rl)]:
        with open(os.path.join(ROOT, "data", name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
