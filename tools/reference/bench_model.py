#!/usr/bin/env python3
"""PyTorch side of `fourd bench model`: builds a small random Qwen2.5-VL (same tokenizer, chat
template and preprocessor as the fixture model), saves it to --out, and times prefill (one image
plus text) and greedy per-token decode with transformers on --device (cpu or cuda) in --dtype. Prints
one JSON line.

Run by `fourd bench model --python` (which then times candle on the same folder and inputs);
standalone: python3 tools/reference/bench_model.py --out /tmp/fourd-bench-model
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import (AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLVideoProcessor,
                          Qwen2_5_VLProcessor, Qwen2VLImageProcessor)

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests/fixtures/qwen25vl"


def small_config(tok, size: str) -> Qwen2_5_VLConfig:
    text = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8,
                num_key_value_heads=2, vocab_size=4096, rms_norm_eps=1e-6, rope_theta=1e6,
                rope_scaling={"type": "mrope", "mrope_section": [8, 12, 12]}, max_position_embeddings=4096)
    vision = dict(depth=4, hidden_size=256, num_heads=4, intermediate_size=512, out_hidden_size=512,
                  patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112,
                  fullatt_block_indexes=[1, 3], tokens_per_second=2)
    if size == "3b":
        # Qwen2.5-VL-3B-Instruct's shape (its config.json), with random weights.
        text.update(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
        vision.update(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31])
    if size == "tiny":
        text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
        vision.update(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64,
                      fullatt_block_indexes=[1])
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>"]}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], eos_token_id=ids["<|im_end|>"],
                            tie_word_embeddings=False)


SIZES = ["small", "tiny", "3b"]
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def add_device_args(ap):
    """--device and --dtype, spelled as fourd spells them."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))


def sync(device: str):
    """Wait for the GPU so that a wall-clock time covers the work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_random_model(out: Path, tokenizer_dir: Path, size: str, device: str = "cpu", dtype: str = "f32"):
    """A fresh folder with the tokenizer files of `tokenizer_dir` and a random model (not saved yet),
    built directly on `device` in `dtype` (a 3B model is initialised on the GPU in seconds)."""
    torch.manual_seed(0)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json"]:
        shutil.copy(tokenizer_dir / f, out / f)
    tok = AutoTokenizer.from_pretrained(out)
    default = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dtype])
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(small_config(tok, size)).eval()
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return tok, model


def save_model(model, out: Path):
    model.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [], "do_sample": False}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="small", choices=SIZES)
    add_device_args(ap)
    ap.add_argument("--question", default="Describe the picture in detail. " * 24)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    tok, model = build_random_model(out, FIX / "model-v5", a.size, a.device, a.dtype)
    save_model(model, out)

    ip = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=200704)
    proc = Qwen2_5_VLProcessor(image_processor=ip, video_processor=Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=200704), tokenizer=tok, chat_template=tok.chat_template or (out / "chat_template.jinja").read_text())
    image = Image.open(FIX / "media/img_a.png").convert("RGB")
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": a.question}]}]
    text = proc.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text], images=[image], return_tensors="pt").to(a.device)

    def prefill():
        with torch.no_grad():
            out = model(**inputs, use_cache=True)
        sync(a.device)
        return out

    prefill()  # warm-up
    t = []
    for _ in range(a.repeats):
        s = time.perf_counter(); prefill(); t.append(time.perf_counter() - s)
    prefill_s = min(t)

    def decode():
        with torch.no_grad():
            g = model.generate(**inputs, max_new_tokens=a.decode_tokens, min_new_tokens=a.decode_tokens,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
        sync(a.device)
        return g
    decode()
    t = []
    for _ in range(a.repeats):
        s = time.perf_counter(); g = decode(); t.append(time.perf_counter() - s)
    total = min(t)
    per_token = (total - prefill_s) / (a.decode_tokens - 1)
    print(json.dumps({
        "stack": f"transformers {transformers.__version__} / torch {torch.__version__}",
        "threads": a.threads,
        "device": a.device,
        "dtype": a.dtype,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "prefill_s": prefill_s,
        "decode_s_per_token": per_token,
        "generated": g[0, inputs["input_ids"].shape[1]:].tolist(),
        "model_dir": str(out),
        "question": a.question,
    }))


if __name__ == "__main__":
    main()
