#!/usr/bin/env python3
"""PyTorch side of `fourd bench train`: DIFT training-step throughput (tokens/s) on --device.

It builds the small random latent checkpoint of bench_generate.py in --out (hidden 512, 6 layers),
builds the sequence of tests/fixtures/dift/record.jsonl with the same rules as
make_dift_fixtures.py, and times forward + DIFT loss + backward + AdamW steps of the language
model (vision tower frozen, as in DIFT), with the same one-sequence micro-batch fourd uses.
With --dtype bf16 the weights and AdamW's state are bf16 (the usual PyTorch set-up; fourd keeps f32
master weights and state). --gradient-checkpointing recomputes the decoder layers in backward.
Prints one JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import SIZES, add_device_args, build_random_model, save_model, sync  # noqa: E402
import make_qwen25vl_fixtures as Q  # noqa: E402
import make_latent_fixtures as L  # noqa: E402
import make_dift_fixtures as D  # noqa: E402

import transformers  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LATENT = ROOT / "tests/fixtures/latent/model"
FIX = ROOT / "tests/fixtures/dift"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", default="small", choices=SIZES)
    add_device_args(ap)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--lora-rank", type=int, help="train a peft LoRA adapter of this rank (alpha 2r, the "
                    "language model's projections, the latent tokens' rows) instead of every weight")
    ap.add_argument("--tf450", default="/tmp/tf450")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    tok, model = build_random_model(out, LATENT, a.size, a.device, a.dtype)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<|latent_pad|>", "<|latent_start|>", "<|latent_end|>"]}
    model.config.latent_size = 4
    model.config.latent_token_id = ids["<|latent_pad|>"]
    model.config.latent_start_id = ids["<|latent_start|>"]
    model.config.latent_end_id = ids["<|latent_end|>"]
    save_model(model, out)
    cfg = model.config
    record = json.loads((FIX / "record.jsonl").read_text())
    processor = L.build_processor(tok)
    block = "<|latent_start|>" + "<|latent_pad|>" * 4 + "<|latent_end|>"
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": record["text_input"] + D.SUFFIX}]}
    assistant = {"role": "assistant", "content": [{"type": "text", "text": record["text_output"].replace("<output_image>", block)}]}
    full = processor.apply_chat_template([user, assistant], tokenize=False)
    prompt = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    frames = [Image.open(FIX / p).convert("RGB") for p in record["image_input"]]
    meta = [VideoMetadata(total_num_frames=len(frames), fps=1.0)]
    inp = processor(text=[full], videos=[frames], video_metadata=meta, cap_pixels_per_frame=False, return_tensors="pt")
    pin = processor(text=[prompt], videos=[frames], video_metadata=meta, cap_pixels_per_frame=False, return_tensors="pt")
    ids_t = inp["input_ids"]
    labels = ids_t.clone()
    labels[:, : pin["input_ids"].shape[1]] = -100
    labels[ids_t == cfg.latent_token_id] = -100
    helpers = [Image.open(FIX / p).convert("RGB") for p in record["image_output"]]
    himg = processor.image_processor(images=helpers, return_tensors="pt")
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    if a.lora_rank:
        from peft import LoraConfig, get_peft_model
        rows = [cfg.latent_token_id, cfg.latent_start_id, cfg.latent_end_id]
        targets = r"^(?!(?:model\.)?visual\.)(?:.*\.)?(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
        tokens = rows if cfg.tie_word_embeddings else {"embed_tokens": rows, "lm_head": rows}
        model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank, target_modules=targets,
                                                 trainable_token_indices=tokens)).get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = dict(fused=True) if a.device.startswith("cuda") else {}
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **fused)
    spg = torch.tensor([2.0])
    mask = torch.ones_like(ids_t)
    if Path(a.tf450).exists():
        pos, _ = Q.TF450(Path(a.tf450)).rope_index(cfg, ids_t, None, inp["video_grid_thw"], spg, mask)
    else:
        # Without transformers 4.50 at hand (a GPU machine, say) the M-RoPE indices are plain
        # positions: the same work, so the timing holds, but the loss is not comparable to fourd's.
        pos = torch.arange(ids_t.shape[1])[None, None].expand(3, 1, -1)
    dev = a.device
    inp, himg = inp.to(dev), himg.to(dev)
    ids_t, labels, mask, pos = ids_t.to(dev), labels.to(dev), mask.to(dev), pos.to(dev)
    if a.gradient_checkpointing:
        model.model.language_model.gradient_checkpointing_enable()
        model.model.language_model.train()

    def step(phases=None):
        # With `phases`, the device is synchronised between forward, backward and optimiser and
        # each part's seconds are added up (separate steps, so the throughput is not disturbed).
        t0 = time.perf_counter()
        with torch.no_grad():
            vfeat = torch.cat(model.model.get_video_features(inp["pixel_values_videos"], inp["video_grid_thw"]).pooler_output)
            hf = model.model.get_image_features(himg["pixel_values"], himg["image_grid_thw"]).pooler_output
            lfeat = torch.cat([f[: (f.shape[0] // 4) * 4].reshape(4, f.shape[0] // 4, -1).mean(1) for f in hf])
        emb = model.get_input_embeddings()(ids_t)
        emb = emb.masked_scatter((ids_t == cfg.video_token_id)[..., None].expand_as(emb), vfeat)
        emb = emb.masked_scatter((ids_t == cfg.latent_token_id)[..., None].expand_as(emb), lfeat)
        hidden = model.model.language_model(inputs_embeds=emb, attention_mask=mask, position_ids=pos).last_hidden_state
        logits = model.lm_head(hidden)
        ce = F.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=-100)
        lp = (ids_t[0] == cfg.latent_token_id).nonzero().squeeze(1)
        sim = (1 - F.cosine_similarity(hidden[0, lp - 1], emb[0, lp].detach(), dim=-1)).mean()
        loss = 0.1 * ce + sim
        opt.zero_grad()
        if phases is not None:
            sync(dev)
            t1 = time.perf_counter()
        loss.backward()
        if phases is not None:
            sync(dev)
            t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if phases is not None:
            sync(dev)
            t3 = time.perf_counter()
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2)):
                phases[k] = phases.get(k, 0.0) + v
        return loss.item()

    step()  # warm-up
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(dev)
    s = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync(dev)
    dt = time.perf_counter() - s
    phases = {}
    for _ in range(a.steps):
        step(phases)
    phases = {k: v / a.steps for k, v in phases.items()}
    n = ids_t.shape[1]
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else None
    print(json.dumps({"stack": f"transformers {transformers.__version__} / torch {torch.__version__}", "threads": a.threads,
                      "device": dev, "dtype": a.dtype, "gradient_checkpointing": a.gradient_checkpointing,
                      "lora_rank": a.lora_rank, "trained_parameters": sum(p.numel() for p in params),
                      "seq_len": n, "steps": a.steps, "seconds": dt, "tokens_per_s": n * a.steps / dt,
                      "peak_gib": peak, "last_loss": loss, "phases_s": phases, "model_dir": str(out)}))


if __name__ == "__main__":
    main()
