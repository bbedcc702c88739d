#!/usr/bin/env python3
"""Checks that an adapter fourd wrote loads in peft as fourd reads it.

    python3 tools/reference/check_fourd_adapter.py --base MODEL --adapter ADAPTER [--merged MERGED]

* `PeftModel.from_pretrained(base, ADAPTER)` must load every tensor of the file (no missing or
  unexpected adapter keys) and adapt exactly the modules the file names;
* the adapter must change the logits (a zero adapter would pass everything else);
* with `--merged` (what `fourd model merge-lora --model MODEL --adapter ADAPTER --out MERGED`
  wrote), peft's `merge_and_unload()` must give the same weights, tensor by tensor: the ranks,
  scales and token rows peft read are the ones fourd trained.

Needs torch, transformers 5.x and peft (checked with peft 0.21.2). Prints one line per check
and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import Qwen2_5_VLForConditionalGeneration


def fail(msg: str) -> None:
    print(f"FAIL: {msg}")
    sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.base, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 40, 7, 99, 12, 300, 5] + [base.config.latent_start_id, base.config.latent_token_id]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model = PeftModel.from_pretrained(base, args.adapter)
    file_keys = set(load_file(f"{args.adapter}/adapter_model.safetensors"))
    loaded = {n.replace(".default", "") for n, _ in model.named_parameters()
              if "lora_" in n or "trainable_tokens_delta" in n}
    loaded = {"base_model.model." + k[len("base_model.model."):] for k in loaded}
    if file_keys != loaded:
        fail(f"file and model differ: only in file {sorted(file_keys - loaded)[:3]}, "
             f"only in model {sorted(loaded - file_keys)[:3]}")
    print(f"ok: peft loaded all {len(file_keys)} adapter tensors and no others")
    with torch.no_grad():
        after = model(input_ids=ids).logits
    change = (after - before).abs().max().item()
    if change == 0.0:
        fail("the adapter does not change the logits")
    print(f"ok: the adapter changes the logits (max |diff| {change:.3e})")
    if args.merged:
        def legacy(k: str) -> str:  # transformers <= 4.51 names, which fourd keeps if the base has them
            for new, old in (("model.language_model.", "model."), ("model.visual.", "visual.")):
                if k.startswith(new):
                    return old + k[len(new):]
            return k
        merged = {legacy(k): v for k, v in model.merge_and_unload().state_dict().items()}
        ours = {}
        from pathlib import Path
        for f in sorted(Path(args.merged).glob("*.safetensors")):
            ours.update({legacy(k): v for k, v in load_file(f).items()})
        worst, name = 0.0, None
        missing = sorted(set(merged) - set(ours))
        if missing:
            fail(f"fourd's merged checkpoint lacks {missing[:3]}")
        for k, v in merged.items():
            d = (v.float() - ours[k].float()).abs().max().item()
            if d > worst:
                worst, name = d, k
        if worst > 1e-5:
            fail(f"peft's merge differs from fourd's at {name} by {worst:.3e}")
        print(f"ok: peft merge_and_unload equals fourd merge-lora (max |diff| {worst:.3e} over {len(merged)} tensors)")


if __name__ == "__main__":
    main()
