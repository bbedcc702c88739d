#!/usr/bin/env python3
"""Reference fixture for the 4DRL (GRPO) objective (tests/fixtures/grpo/).

Run from the repository root after make_dift_fixtures.py (it reuses its frames):

    python3 tools/reference/make_grpo_fixtures.py [--tf450 /tmp/tf450]

A PyTorch reimplementation of the objective fourd trains with, on the tiny checkpoint
tests/fixtures/latent/model (f32, CPU) and a fixed rollout of two completions of one prompt:

* prompt: the 4 fixture frames as a video (fps 1) + question, options and the 4DThinker suffix,
  rendered by the chat template with the generation prompt;
* completion 0: text, one imagery segment (<|latent_start|>, 4 x <|latent_pad|>, <|latent_end|>),
  text, <|im_end|>; completion 1: text only, <|im_end|>. The latent pads' input embeddings are
  given vectors (the hidden states a rollout would have fed back: re-injection);
* log-probs: log_softmax of the logits at the position before each completion token (4.50
  positions); mask: sampled text tokens only (no latent start / pad / end);
* per token: -min(r A, clip(r, 1-eps, 1+eps) A) + beta * (exp(ref - logp) - (ref - logp) - 1),
  r = exp(logp - old), with given old / ref log-probs (logp + noise, so that clipping and the
  KL term are exercised) and advantages; token-level average over the batch (and, as a second
  number, the per-sequence average).

Written: expected.safetensors (ids, hidden states, old/ref log-probs, the policy log-probs,
gradients of every language-model tensor under transformers <= 4.51 names), manifest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_qwen25vl_fixtures as Q  # noqa: E402
import make_latent_fixtures as L  # noqa: E402
import make_dift_fixtures as D  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "latent" / "model"
FRAMES = REPO / "tests" / "fixtures" / "dift"
OUT = REPO / "tests" / "fixtures" / "grpo"
EPS, BETA = 0.2, 0.04
ADVANTAGES = [0.8, -1.3]
QUESTION = "Which way does the camera move?"
OPTIONS = ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Stay"]


lora_model, adapter_grad_name = D.lora_model, D.adapter_grad_name


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
    tok = AutoTokenizer.from_pretrained(MODEL)
    processor = L.build_processor(tok)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    if args.lora:
        model = lora_model(model, args.lora)
    cfg = model.config
    pad, start, end = cfg.latent_token_id, cfg.latent_start_id, cfg.latent_end_id
    im_end = tok.convert_tokens_to_ids("<|im_end|>")

    text = QUESTION + "\n\n" + "\n".join(OPTIONS) + D.SUFFIX
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}
    prompt = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    frames = [Image.open(FRAMES / f"media/frame_{i}.png").convert("RGB") for i in range(4)]
    meta = [VideoMetadata(total_num_frames=4, fps=1.0)]
    inp = processor(text=[prompt], videos=[frames], video_metadata=meta, cap_pixels_per_frame=False, return_tensors="pt")
    prompt_ids = inp["input_ids"][0].tolist()

    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    c0 = enc("<think>I picture the scene") + [start] + [pad] * cfg.latent_size + [end] + \
        enc(" and it slides left.</think><answer>B. Pan Right</answer>") + [im_end]
    c1 = enc("<think>no idea</think><answer>C</answer>") + [im_end]
    kinds = [[1 if t == start else 2 if t == pad else 3 if t == end else 0 for t in c] for c in (c0, c1)]
    g = torch.Generator().manual_seed(11)
    hidden = torch.randn(cfg.latent_size, cfg.text_config.hidden_size, generator=g)

    with torch.no_grad():
        vfeat = torch.cat(model.model.get_video_features(inp["pixel_values_videos"], inp["video_grid_thw"]).pooler_output)
    spg = torch.tensor([cfg.vision_config.temporal_patch_size / 1.0])
    logps, masks = [], []
    for comp, kind in zip((c0, c1), kinds):
        ids = torch.tensor([prompt_ids + comp])
        emb = model.get_input_embeddings()(ids)
        emb = emb.masked_scatter((ids == cfg.video_token_id)[..., None].expand_as(emb), vfeat)
        if (ids == pad).any():
            emb = emb.masked_scatter((ids == pad)[..., None].expand_as(emb), hidden)
        mask = torch.ones_like(ids)
        pos, _ = tf450.rope_index(cfg, ids, None, inp["video_grid_thw"], spg, mask)
        out = model.model.language_model(inputs_embeds=emb, attention_mask=mask, position_ids=pos)
        logits = model.lm_head(out.last_hidden_state)[0]
        p, c = len(prompt_ids), len(comp)
        lp = torch.log_softmax(logits[p - 1: p - 1 + c].float(), -1).gather(1, torch.tensor(comp)[:, None]).squeeze(1)
        logps.append(lp)
        masks.append(torch.tensor([k == 0 for k in kind]))
    noise = torch.Generator().manual_seed(12)
    olds = [lp.detach() + 0.25 * torch.randn(lp.shape, generator=noise) for lp in logps]
    refs = [lp.detach() + 0.25 * torch.randn(lp.shape, generator=noise) for lp in logps]

    def per_token(lp, old, ref, a):
        r = torch.exp(lp - old)
        pg = -torch.minimum(r * a, torch.clamp(r, 1 - EPS, 1 + EPS) * a)
        d = ref - lp
        return pg + BETA * (torch.exp(d) - d - 1)

    terms = [per_token(lp, o, r, a)[m] for lp, o, r, a, m in zip(logps, olds, refs, ADVANTAGES, masks)]
    n_tokens = sum(t.numel() for t in terms)
    loss = sum(t.sum() for t in terms) / n_tokens
    loss_seq = sum(t.mean() for t in terms) / len(terms)
    clipped = sum(int(((torch.exp(lp - o) > 1 + EPS) & m).sum()) if a > 0 else int(((torch.exp(lp - o) < 1 - EPS) & m).sum())
                  for lp, o, a, m in zip(logps, olds, ADVANTAGES, masks))
    model.zero_grad()
    loss.backward()

    tensors = {
        "prompt_ids": torch.tensor(prompt_ids, dtype=torch.int64),
        "completion_0": torch.tensor(c0, dtype=torch.int64),
        "completion_1": torch.tensor(c1, dtype=torch.int64),
        "kinds_0": torch.tensor(kinds[0], dtype=torch.int64),
        "kinds_1": torch.tensor(kinds[1], dtype=torch.int64),
        "latent_hidden_0": hidden.contiguous(),
        "old_0": olds[0].contiguous(), "old_1": olds[1].contiguous(),
        "ref_0": refs[0].contiguous(), "ref_1": refs[1].contiguous(),
        "logp_0": logps[0].detach().contiguous(), "logp_1": logps[1].detach().contiguous(),
    }
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
        "generator": "tools/reference/make_grpo_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tf450_version": tf450.version,
        "model": "tests/fixtures/latent/model",
        "frames": [f"tests/fixtures/dift/media/frame_{i}.png" for i in range(4)],
        "question": QUESTION,
        "options": OPTIONS,
        "epsilon": EPS,
        "beta": BETA,
        "advantages": ADVANTAGES,
        "masked_tokens": n_tokens,
        "clipped_tokens": clipped,
        "loss_token_level": loss.item(),
        "loss_per_sequence": loss_seq.item(),
        "grad_tensors": n_grads,
        "positions_rule": "transformers 4.50 get_rope_index",
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
