#!/usr/bin/env python3
"""Reference fixture for the DIFT objective (tests/fixtures/dift/).

Run from the repository root after make_latent_fixtures.py (it trains from that tiny model):

    python3 tools/reference/make_dift_fixtures.py [--tf450 /tmp/tf450]

What it computes, with stock transformers 5.x on the tiny random checkpoint
tests/fixtures/latent/model (f32, CPU), for one DIFT record written here (4 video frames, two
helper images, two <output_image> tags):

* the sequence, built from the DIFT rules (not from Rust): the chat template renders
  user = [video, text_input + 4DThinker suffix], assistant = [text_output with the k-th
  <output_image> replaced by <|latent_start|> + latent_size x <|latent_pad|> + <|latent_end|>];
  the processor expands the video (fps 1); labels = every token after the generation prompt
  except latent pads;
* the embeddings: token embeddings, video features (frozen ViT) at the video pads, and at the
  latent pads each helper image's merged features averaged in latent_size contiguous groups
  (remainder rows dropped: the fork's compress_strategy "average"), detached;
* positions: transformers 4.50's get_rope_index (what the checkpoints were trained with);
* loss = 0.1 * CE(shifted, mean over labels) + 1.0 * mean(1 - cos(h[p-1], e[p])) with h the
  final-norm hidden states, and the gradient of every language-model parameter.

Written: record.jsonl + media/, expected.safetensors (ids, labels, gradients under the
transformers <= 4.51 names), manifest.json (losses, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_qwen25vl_fixtures as Q  # noqa: E402
import make_latent_fixtures as L  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "latent" / "model"
OUT = REPO / "tests" / "fixtures" / "dift"
SUFFIX = ("\nFirst, think about the reasoning process with mental imagery of the relevant object or region, "
          "then provide the user with the answer. Put the reasoning in <think>...</think> and only the final "
          "answer in <answer>...</answer>, e.g. <think> reasoning process (with mental imagery as needed) "
          "</think><answer> answer here </answer>.")
CE_WEIGHT, SIM_WEIGHT = 0.1, 1.0


def write_media() -> dict:
    rng = np.random.default_rng(7)
    (OUT / "media").mkdir(parents=True)
    frames = []
    for i in range(4):  # 84x56 frames: on the 28 grid, no resize anywhere
        p = f"media/frame_{i}.png"
        Image.fromarray(Q._smooth_image(84, 56, rng, 0.3 * i, 2.0)).save(OUT / p, optimize=True)
        frames.append(p)
    helpers = []
    for i, (w, h) in enumerate([(112, 56), (84, 84)]):  # 8 and 9 merged tokens: groups of 2, 1 row dropped
        p = f"media/overlay_{i}.png"
        Image.fromarray(Q._smooth_image(w, h, rng, 1.0 + i, 2.0)).save(OUT / p, optimize=True)
        helpers.append(p)
    return {"frames": frames, "helpers": helpers}


def lora_model(model, adapter):
    """The model with the PEFT adapter in `adapter` injected, its adapter parameters trainable."""
    from peft import PeftModel
    return PeftModel.from_pretrained(model, adapter, is_trainable=True).get_base_model()


def adapter_grad_name(name: str) -> str:
    """A PEFT parameter name (`model.language_model.layers.0.mlp.up_proj.lora_A.default.weight`)
    in fourd's adapter naming (transformers <= 4.51 paths, no adapter name)."""
    name = name.replace(".default", "")
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    return name


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--tf450", default="/tmp/tf450")
    ap.add_argument("--lora", help="a PEFT adapter folder: the model runs with it, and the gradients "
                    "written are the adapter's (make_lora_fixtures.py passes this)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    OUT = Path(args.out)
    tf450 = Q.TF450(Path(args.tf450))
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    media = write_media()
    record = {
        "id": "dift-fixture-0",
        "text_input": "Which way does the camera move?\nA. Pan Left\nB. Pan Right\nC. Tilt Up\nD. Stay",
        "text_output": "<think>The first keyframe <output_image> and the last keyframe <output_image> show the "
                       "scene sliding left.</think><answer>B. Pan Right</answer>",
        "image_input": media["frames"],
        "image_output": media["helpers"],
    }
    (OUT / "record.jsonl").write_text(json.dumps(record) + "\n")

    tok = AutoTokenizer.from_pretrained(MODEL)
    processor = L.build_processor(tok)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    if args.lora:
        model = lora_model(model, args.lora)
    cfg = model.config
    Lsize = cfg.latent_size
    pad, start, end = cfg.latent_token_id, cfg.latent_start_id, cfg.latent_end_id
    block = "<|latent_start|>" + "<|latent_pad|>" * Lsize + "<|latent_end|>"
    reply = record["text_output"].replace("<output_image>", block)
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": record["text_input"] + SUFFIX}]}
    assistant = {"role": "assistant", "content": [{"type": "text", "text": reply}]}
    prompt = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template([user, assistant], tokenize=False)
    assert full.startswith(prompt)
    frames = [Image.open(OUT / p).convert("RGB") for p in record["image_input"]]
    meta = [VideoMetadata(total_num_frames=len(frames), fps=1.0)]
    inp = processor(text=[full], videos=[frames], video_metadata=meta, cap_pixels_per_frame=False, return_tensors="pt")
    pin = processor(text=[prompt], videos=[frames], video_metadata=meta, cap_pixels_per_frame=False, return_tensors="pt")
    ids = inp["input_ids"]
    prompt_len = pin["input_ids"].shape[1]
    assert torch.equal(ids[0, :prompt_len], pin["input_ids"][0])
    labels = ids.clone()
    labels[:, :prompt_len] = -100
    labels[ids == pad] = -100

    helpers = [Image.open(OUT / p).convert("RGB") for p in record["image_output"]]
    himg = processor.image_processor(images=helpers, return_tensors="pt")
    with torch.no_grad():
        vfeat = torch.cat(model.model.get_video_features(inp["pixel_values_videos"], inp["video_grid_thw"]).pooler_output)
        hfeats = model.model.get_image_features(himg["pixel_values"], himg["image_grid_thw"]).pooler_output
        comp = []
        for f in hfeats:
            g = f.shape[0] // Lsize
            comp.append(f[: g * Lsize].reshape(Lsize, g, -1).mean(1))
        lfeat = torch.cat(comp)
    emb = model.get_input_embeddings()(ids)
    emb = emb.masked_scatter((ids == cfg.video_token_id)[..., None].expand_as(emb), vfeat)
    emb = emb.masked_scatter((ids == pad)[..., None].expand_as(emb), lfeat)
    spg = torch.tensor([cfg.vision_config.temporal_patch_size / 1.0])
    mask = torch.ones_like(ids)
    pos, _ = tf450.rope_index(cfg, ids, None, inp["video_grid_thw"], spg, mask)
    out = model.model.language_model(inputs_embeds=emb, attention_mask=mask, position_ids=pos)
    hidden = out.last_hidden_state
    logits = model.lm_head(hidden)
    ce = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    lp = (ids[0] == pad).nonzero().squeeze(1)
    cos = F.cosine_similarity(hidden[0, lp - 1], emb[0, lp].detach(), dim=-1)
    sim = (1 - cos).mean()
    total = CE_WEIGHT * ce + SIM_WEIGHT * sim
    model.zero_grad()
    total.backward()

    tensors = {"input_ids": ids[0].to(torch.int64), "labels": labels[0].to(torch.int64)}
    n_grads = 0
    for name, p in model.named_parameters():
        if "visual" in name or not p.requires_grad:
            continue
        key = adapter_grad_name(name) if args.lora else Q.v5_to_v4_key(name)
        tensors["grad." + key] = p.grad.detach().clone().contiguous()
        n_grads += 1
    save_file(tensors, OUT / "expected.safetensors")
    manifest = {
        "adapter": args.lora,
        "generator": "tools/reference/make_dift_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tf450_version": tf450.version,
        "model": "tests/fixtures/latent/model",
        "latent_size": Lsize,
        "prompt_len": prompt_len,
        "seq_len": ids.shape[1],
        "latent_positions": lp.tolist(),
        "ce_weight": CE_WEIGHT,
        "sim_weight": SIM_WEIGHT,
        "ce": ce.item(),
        "sim": sim.item(),
        "cos_mean": cos.mean().item(),
        "total": total.item(),
        "grad_tensors": n_grads,
        "positions_rule": "transformers 4.50 get_rope_index",
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
