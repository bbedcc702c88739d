#!/usr/bin/env python3
"""Reference fixtures for LoRA adapters in PEFT's format (tests/fixtures/lora/).

Run from the repository root after make_latent_fixtures.py and make_dift_fixtures.py:

    python3 tools/reference/make_lora_fixtures.py [--tf450 /tmp/tf450]

Needs torch, transformers 5.x and peft (made with peft 0.21.2). Every adapter is made by peft
itself (`get_peft_model` + `save_pretrained`), with its B matrices and token rows moved off their
initial values (B = 0 would make any adapter look right). Written:

* `adapter/`: on tests/fixtures/latent/model (untied lm_head): r 4, alpha 8, the language model's
  seven projections (a `target_modules` regex that leaves the vision tower out), an
  `alpha_pattern` for down_proj (alpha 16), and trainable token rows for the three latent tokens
  in both embed_tokens and lm_head.
* `adapter-legacy/`: the same tensors under transformers 4.50's module paths
  (`base_model.model.model.layers.N…`), as peft on transformers <= 4.51 writes them (renamed here:
  peft itself cannot load that layout onto transformers 5, see the Rust reader's docs).
* `adapter-vision/`: r 2, rsLoRA, `target_modules` as a plain list (`["qkv", "gate_proj",
  "v_proj"]`), which peft applies to the vision tower's `attn.qkv` and MLP `gate_proj` too.
* `adapter-tied/`: on tests/fixtures/qwen25vl/model-tied-bf16 (loaded as float32; tied lm_head),
  q_proj and v_proj, token rows as a list, which peft ties to lm_head.
* `merged/`: `merge_and_unload()` of `adapter/`, saved by transformers.
* `cases.safetensors`: input ids, the logits of the base, of each adapter and of the merged
  model; for `adapter-vision/`, pixel values and the vision tower's output.
* `dift/`, `grpo/`: make_dift_fixtures.py and make_grpo_fixtures.py run with `--lora adapter/`:
  loss and the gradient of every adapter tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# peft keeps a list `target_modules` as a set, which it writes in hash order: fix the seed so that
# two runs write the same file.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODEL = REPO / "tests" / "fixtures" / "latent" / "model"
TIED = REPO / "tests" / "fixtures" / "qwen25vl" / "model-tied-bf16"
PIXELS = REPO / "tests" / "fixtures" / "qwen25vl" / "pixels.safetensors"
OUT = REPO / "tests" / "fixtures" / "lora"
LM_TARGETS = r"^(?!(?:model\.)?visual\.)(?:.*\.)?(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def load(path: Path):
    # By a path relative to the repository, which is what peft records as base_model_name_or_path.
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path.relative_to(REPO), dtype=torch.float32).eval()


def perturb(pm, seed: int) -> None:
    """Moves every B matrix and token row off its initial value, deterministically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(pm.named_parameters()):
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def make(base: Path, cfg: LoraConfig, out: Path, seed: int):
    torch.manual_seed(seed)
    pm = get_peft_model(load(base), cfg)
    perturb(pm, seed)
    pm.save_pretrained(out)
    return pm


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits[0].contiguous()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tf450", default="/tmp/tf450")
    args = ap.parse_args()
    os.chdir(REPO)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base_cfg = load(MODEL).config
    latent = [base_cfg.latent_token_id, base_cfg.latent_start_id, base_cfg.latent_end_id]
    ids = torch.tensor([[1, 40, 7, base_cfg.latent_start_id] + [base_cfg.latent_token_id] * 4 +
                        [base_cfg.latent_end_id, 99, 12, 300, 5]])
    cases = {"input_ids": ids[0].to(torch.int64)}

    # The main adapter, its logits, and the merged model.
    main_cfg = LoraConfig(r=4, lora_alpha=8, target_modules=LM_TARGETS, alpha_pattern={"down_proj": 16},
                          trainable_token_indices={"embed_tokens": latent, "lm_head": latent})
    pm = make(MODEL, main_cfg, OUT / "adapter", 1)
    cases["logits_adapter"] = logits(pm, ids)
    with pm.disable_adapter():
        cases["logits_base"] = logits(pm, ids)
    merged = pm.merge_and_unload()
    cases["logits_merged"] = logits(merged, ids)
    merged.save_pretrained(OUT / "merged")
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (MODEL / f).exists():
            shutil.copy(MODEL / f, OUT / "merged" / f)
    # A fresh load through PeftModel.from_pretrained gives the same logits (the saved file is
    # complete).
    reloaded = PeftModel.from_pretrained(load(MODEL), OUT / "adapter")
    assert torch.equal(logits(reloaded, ids), cases["logits_adapter"])

    # The legacy layout of the same adapter.
    legacy = OUT / "adapter-legacy"
    legacy.mkdir()
    shutil.copy(OUT / "adapter" / "adapter_config.json", legacy)
    sd = load_file(OUT / "adapter" / "adapter_model.safetensors")
    save_file({k.replace("model.language_model.", "model."): v for k, v in sd.items()},
              legacy / "adapter_model.safetensors", metadata={"format": "pt"})

    # Vision tower modules adapted through a plain list of names, rsLoRA scaling.
    vis_cfg = LoraConfig(r=2, lora_alpha=3, use_rslora=True, target_modules=["qkv", "gate_proj", "v_proj"])
    pv = make(MODEL, vis_cfg, OUT / "adapter-vision", 2)
    px = load_file(PIXELS)
    key = "media/img_a.png"
    pixels = px[key].to(torch.float32)
    size = json.loads((REPO / "tests" / "fixtures" / "qwen25vl" / "manifest.json").read_text())["media"][key]
    patch = base_cfg.vision_config.patch_size
    thw = torch.tensor([[1, size["height"] // patch, size["width"] // patch]])
    assert int(thw.prod()) == pixels.shape[0]
    with torch.no_grad():
        vis = torch.cat(pv.get_base_model().model.get_image_features(pixels, thw).pooler_output)
        with pv.disable_adapter():
            vis_base = torch.cat(pv.get_base_model().model.get_image_features(pixels, thw).pooler_output)
    assert not torch.allclose(vis, vis_base)
    cases["vision_pixels"] = pixels.contiguous()
    cases["vision_grid_thw"] = thw[0].to(torch.int64)
    cases["vision_adapter"] = vis.contiguous()
    cases["logits_vision_adapter"] = logits(pv, ids)

    # A tied lm_head: token rows given as a list follow into lm_head.
    tied_cfg = LoraConfig(r=4, lora_alpha=4, target_modules=LM_TARGETS.replace(
        "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj", "q_proj|v_proj"), trainable_token_indices=[5, 7, 300])
    pt = make(TIED, tied_cfg, OUT / "adapter-tied", 3)
    assert pt.get_base_model().config.tie_word_embeddings
    tied_ids = torch.tensor([[1, 40, 5, 7, 300, 99, 12, 300, 5, 7]])
    cases["input_ids_tied"] = tied_ids[0].to(torch.int64)
    cases["logits_tied_adapter"] = logits(pt, tied_ids)
    with pt.disable_adapter():
        cases["logits_tied_base"] = logits(pt, tied_ids)

    save_file(cases, OUT / "cases.safetensors")
    for which in ("dift", "grpo"):
        subprocess.run([sys.executable, str(HERE / f"make_{which}_fixtures.py"), "--tf450", args.tf450,
                        "--lora", str((OUT / "adapter").relative_to(REPO)), "--out", str(OUT / which)], check=True,
                       stdout=subprocess.DEVNULL)
    manifest = {
        "generator": "tools/reference/make_lora_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "peft_version": peft.__version__,
        "model": "tests/fixtures/latent/model",
        "tied_model": "tests/fixtures/qwen25vl/model-tied-bf16 (as float32)",
        "latent_ids": latent,
        "vision_image": key,
        "max_abs_merged_vs_adapter": (cases["logits_merged"] - cases["logits_adapter"]).abs().max().item(),
        "max_abs_adapter_vs_base": (cases["logits_adapter"] - cases["logits_base"]).abs().max().item(),
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
