#!/usr/bin/env python3
"""Checks that a checkpoint written by `fourd train dift|grpo` loads in
Hugging Face transformers and gives the same outputs as fourd.

    python3 tools/reference/check_fourd_checkpoint.py CKPT [--fourd target/release/fourd] [--image IMG]

It runs `fourd infer --json --greedy` on one image and question, then, in transformers, feeds
the prompt plus fourd's generated ids through one forward pass (positions by transformers 4.50's
get_rope_index, as fourd uses) and compares, for every generated text token before the first
`<|latent_start|>`, (1) that transformers' argmax is fourd's token and (2) the log-probability.
Prints the max abs log-prob difference; exits non-zero if a token differs or it exceeds 1e-4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_qwen25vl_fixtures as Q  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor  # noqa: E402
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: E402
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--fourd", default=str(REPO / "target" / "release" / "fourd"))
    ap.add_argument("--image", default=str(REPO / "tests" / "fixtures" / "dift" / "media" / "frame_0.png"))
    ap.add_argument("--question", default="Which way does the camera move?")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--tf450", default="/tmp/tf450")
    args = ap.parse_args()
    ckpt = Path(args.checkpoint)
    out = subprocess.run(
        [args.fourd, "infer", "--model", str(ckpt), "--image", args.image, "--question", args.question, "--greedy",
         "--json", "--max-new-tokens", str(args.tokens)],
        capture_output=True, text=True, check=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    gen, lps = res["token_ids"], res["logprobs"]

    tok = AutoTokenizer.from_pretrained(ckpt)
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pre["min_pixels"], max_pixels=pre["max_pixels"]),
        video_processor=Qwen2VLVideoProcessor(min_pixels=pre["min_pixels"], max_pixels=pre["max_pixels"]),
        tokenizer=tok,
        chat_template=(ckpt / "chat_template.jinja").read_text(),
    )
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32).eval()
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": args.question}]}]
    prompt = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    img = Image.open(args.image).convert("RGB")
    inp = processor(text=[prompt], images=[img], return_tensors="pt")
    ids = torch.cat([inp["input_ids"], torch.tensor([gen])], 1)
    mask = torch.ones_like(ids)
    tf450 = Q.TF450(Path(args.tf450))
    pos, _ = tf450.rope_index(model.config, ids, inp["image_grid_thw"], None, None, mask)
    mm = torch.cat([inp["mm_token_type_ids"], torch.zeros(1, len(gen), dtype=inp["mm_token_type_ids"].dtype)], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=inp["pixel_values"],
                       image_grid_thw=inp["image_grid_thw"], mm_token_type_ids=mm, position_ids=pos).logits[0]
    p = inp["input_ids"].shape[1]
    logp = torch.log_softmax(logits[p - 1: p - 1 + len(gen)].float(), -1)
    start = tok.convert_tokens_to_ids("<|latent_start|>")
    worst, compared = 0.0, 0
    for i, t in enumerate(gen):
        if lps[i] is None:
            break
        if int(logp[i].argmax()) != t:
            print(f"token {i}: transformers argmax {int(logp[i].argmax())}, fourd {t}")
            sys.exit(1)
        worst = max(worst, abs(float(logp[i, t]) - lps[i]))
        compared += 1
        if t == start:
            break
    print(json.dumps({"checkpoint": str(ckpt), "transformers": transformers.__version__, "tokens_compared": compared,
                      "max_abs_logprob_diff": worst, "fourd_text": res["text"][:120]}))
    if worst > 1e-4 or compared == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
