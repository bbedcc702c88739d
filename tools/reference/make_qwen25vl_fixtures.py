#!/usr/bin/env python3
"""Reference fixtures for the Rust Qwen2.5-VL reimplementation (tiny random model).

Run from the repository root:

    python3 tools/reference/make_qwen25vl_fixtures.py [--tf450 /tmp/tf450] [--skip-tf450-crosscheck]

It deletes and rewrites everything under tests/fixtures/qwen25vl/. Deterministic: fixed seeds,
CPU only, one thread. Runtime: about 20 s (2 cores, shared).

Requirements
------------
* python3 with: torch (CPU is enough), transformers 5.x (made with 5.24.0), tokenizers,
  torchvision (the 5.x Qwen2-VL image/video processors are torchvision based), pillow,
  safetensors, numpy, jinja2.
* transformers 4.50.0 in a separate directory (NOT on the default path), used for
    - the 4.50 `get_rope_index` (M-RoPE position rule used by Qwen2.5-VL/4DThinker training):
      its source is read from 4.50's modeling_qwen2_5_vl.py with `ast` and executed here
      with a small shim `self` (no import of 4.50 into this process);
    - the 4.50 `smart_resize` (same ast trick), recorded next to 5.x's in processor_cases.json;
    - writing the tokenizer/processor files of model-v4/ (4.50's own save_pretrained), and
    - a cross-check subprocess (PYTHONPATH=<tf450>) that loads model-v4/ with 4.50's
      Qwen2_5_VLForConditionalGeneration + processor and recomputes input_ids, pixel values,
      positions, logits and greedy tokens for every "v4.50" case.
  Install it once with:
      pip install --no-deps --target /tmp/tf450 transformers==4.50.0 tokenizers==0.21.1 huggingface_hub==0.30.2
  and pass its path with --tf450 (default: $QWEN25VL_TF450 or /tmp/tf450). 4.50 imports fine
  with torch 2.15.

What is built (see tools/reference/README.md for the fixture layout)
----------------------------------------------------------------
* a tiny Qwen2-style byte-level BPE tokenizer trained on the built-in CORPUS, plus the
  Qwen2.5 special tokens (ids differ from real Qwen: look them up by text);
* one random Qwen2.5-VL model (f32) saved three ways: model-v5/ (5.x layout), model-v4/
  (4.x flat config, old key names, 2 shards + index, chat_template.json) and
  model-tied-bf16/ (tie_word_embeddings, bf16, template inside tokenizer_config.json);
* small PNG media, per-case input/output tensors, smart_resize and resize cases.
No expected number is typed by hand: every tensor comes out of transformers.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import BPE  # noqa: E402
from tokenizers.trainers import BpeTrainer  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    AutoTokenizer,
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: E402
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as smart_resize_v5  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor  # noqa: E402
from transformers.image_utils import PILImageResampling  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "qwen25vl"

SEED = 1234
N_GREEDY = 20
MIN_PIXELS = 3136  # 56*56
MAX_PIXELS = 200704  # 256*28*28
VIDEO_FPS = 1.0  # -> second_per_grid_ts = temporal_patch_size / fps = 2.0

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
# Qwen2's pre-tokenizer regex (transformers/models/qwen2/tokenization_qwen2.py, same as the
# real tokenizer.json of Qwen2.5-VL).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5 special tokens, in the real order (real ids 151643..151656).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
BPE_VOCAB_SIZE = 352  # 256 byte symbols + 96 merges; +14 specials = 366 -> model vocab 368

# Small English training corpus (the BPE merges come from here).
CORPUS = """\
You are a helpful assistant. The user asks a question about a picture or a video, and the
assistant answers it. What is in this picture? Describe the image in detail. What happens in
the video? There is a red square and a blue circle on a green background. The ball moves from
the left to the right. How many objects are there in the image? There are two objects: a red
square and a blue circle. Compare the two images. Is the object from the image in the video?
Yes, the blue circle is in the video. Tell me a short story about a red fox and a blue circle.
The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun, and the fox runs
into the green forest. Write one sentence about the quick brown fox. What color is the square?
The square is red. What color is the circle? The circle is blue. What color is the sky? The
sky is blue and the grass is green. It's a small test, and we'll see what it does with numbers
like 12, 345 and 2025. Hello! How are you today? I am fine, thank you. Please describe the
scene: a bright gradient, a moving ball, some noise, and smooth shapes in every frame.
"""

# The real Qwen2.5-VL chat template (chat_template.json of Qwen/Qwen2.5-VL-*-Instruct).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer_stage(stage: Path) -> None:
    """Train the tiny BPE with the `tokenizers` library and write a version-neutral
    tokenizer.json + tokenizer_config.json (loadable by transformers 4.50 and 5.x)."""
    tok = Tokenizer(
        BPE(
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    # Same normalizer / pre-tokenizer / decoder as the real Qwen2 tokenizer.json.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    # decoders.ByteLevel() ignores its kwargs; write the decoder exactly as the real file has it
    # (the flags do not change decoding).
    j = json.loads(tok.to_str())
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = Tokenizer.from_str(json.dumps(j))
    # Added (special) tokens after the BPE vocab, in Qwen2.5 order.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    stage.mkdir(parents=True, exist_ok=True)
    tok.save(str(stage / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
    }
    (stage / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# transformers 4.50 pieces (ast extraction, no import)
# --------------------------------------------------------------------------------------------
def _extract_function(src_path: Path, func_name: str, class_name: str | None, namespace: dict):
    """Compile one function (module level or a class method) from a source file, with its type
    annotations and decorators removed so that it only needs `namespace` to run."""
    tree = ast.parse(src_path.read_text())
    found = None
    for node in tree.body:
        if class_name is None and isinstance(node, ast.FunctionDef) and node.name == func_name:
            found = node
        if class_name is not None and isinstance(node, ast.ClassDef) and node.name == class_name:
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and sub.name == func_name:
                    found = sub
    if found is None:
        raise RuntimeError(f"{func_name} not found in {src_path}")
    found.decorator_list = []
    found.returns = None
    for a in found.args.args + found.args.kwonlyargs:
        a.annotation = None
    mod = ast.Module(body=[found], type_ignores=[])
    ast.fix_missing_locations(mod)
    ns = dict(namespace)
    exec(compile(mod, f"<tf450:{src_path.name}:{func_name}>", "exec"), ns)
    return ns[func_name], ast.get_source_segment(src_path.read_text(), found)


class TF450:
    """The transformers 4.50 installation given by --tf450."""

    def __init__(self, root: Path):
        self.root = root
        pkg = root / "transformers"
        init = (pkg / "__init__.py").read_text()
        self.version = init.split('__version__ = "', 1)[1].split('"', 1)[0]
        if not self.version.startswith("4.50"):
            raise RuntimeError(f"{root} holds transformers {self.version}, expected 4.50.x")
        self.modeling = pkg / "models" / "qwen2_5_vl" / "modeling_qwen2_5_vl.py"
        self.imgproc = pkg / "models" / "qwen2_vl" / "image_processing_qwen2_vl.py"
        self._rope, _ = _extract_function(
            self.modeling, "get_rope_index", "Qwen2_5_VLForConditionalGeneration", {"torch": torch}
        )
        self.smart_resize, _ = _extract_function(self.imgproc, "smart_resize", None, {"math": math})
        self.modeling_sha256 = hashlib.sha256(self.modeling.read_bytes()).hexdigest()

    def rope_index(self, config, input_ids, image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask):
        """4.50's get_rope_index, called with a shim `self` that only carries the config fields it reads."""
        shim = types.SimpleNamespace(
            config=types.SimpleNamespace(
                vision_config=types.SimpleNamespace(
                    spatial_merge_size=config.vision_config.spatial_merge_size,
                    tokens_per_second=config.vision_config.tokens_per_second,
                ),
                image_token_id=config.image_token_id,
                video_token_id=config.video_token_id,
                vision_start_token_id=config.vision_start_token_id,
            )
        )
        return self._rope(shim, input_ids, image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask)

    def run(self, job: dict) -> dict:
        """Run TF450_WORKER in a subprocess with 4.50 first on sys.path."""
        with tempfile.TemporaryDirectory() as td:
            jpath = Path(td) / "job.json"
            jpath.write_text(json.dumps(job))
            wpath = Path(td) / "worker.py"
            wpath.write_text(TF450_WORKER)
            env = dict(os.environ)
            env["PYTHONPATH"] = str(self.root)
            env["OMP_NUM_THREADS"] = "1"
            env["TOKENIZERS_PARALLELISM"] = "false"
            res = subprocess.run(
                [sys.executable, str(wpath), str(jpath)], env=env, capture_output=True, text=True, cwd=td
            )
            if res.returncode != 0:
                sys.stderr.write(res.stdout + res.stderr)
                raise RuntimeError("transformers 4.50 worker failed")
            return json.loads((Path(td) / "result.json").read_text())


# Runs under transformers 4.50 (PYTHONPATH=<tf450>).
TF450_WORKER = r'''
import json, sys, os
from pathlib import Path
import torch
torch.set_num_threads(1)
import transformers
from transformers import (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, AutoTokenizer,
                          AutoProcessor, GenerationConfig)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from safetensors.torch import load_file, save_file
from PIL import Image

job = json.loads(Path(sys.argv[1]).read_text())
out = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
       "transformers_file": transformers.__file__}
assert transformers.__version__.startswith("4.50"), transformers.__version__

if job["mode"] == "save_v4_processor":
    tok = AutoTokenizer.from_pretrained(job["tokenizer_stage"])
    out["tokenizer_class"] = type(tok).__name__
    ip = Qwen2VLImageProcessor(min_pixels=job["min_pixels"], max_pixels=job["max_pixels"])
    proc = Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, chat_template=job["chat_template"])
    proc.save_pretrained(job["out_dir"])
    out["files"] = sorted(os.listdir(job["out_dir"]))

elif job["mode"] == "crosscheck":
    root = Path(job["fixtures"])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(root / job["model"], torch_dtype=torch.float32)
    model.eval()
    model.generation_config = GenerationConfig(do_sample=False, pad_token_id=job["pad_token_id"],
                                               bos_token_id=job["bos_token_id"], eos_token_id=None)
    proc = AutoProcessor.from_pretrained(root / job["model"])
    out["processor_classes"] = [type(proc).__name__, type(proc.image_processor).__name__, type(proc.tokenizer).__name__]
    res_tensors = {}
    out["cases"] = {}
    store = load_file(str(root / "pixels.safetensors"))
    for case in job["cases"]:
        meta = json.loads((root / "cases" / f"{case}.json").read_text())
        ref = load_file(str(root / "cases" / f"{case}.safetensors"))
        # pixel tensors live once per media item in pixels.safetensors
        for k, srcs in meta.get("pixel_sources", {}).items():
            ref[k] = torch.cat([store[s] for s in srcs], 0)
        # 1) 4.50 processor on the same messages
        texts = [proc.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in meta["messages"]]
        images, videos = [], []
        for m in meta["messages"]:
            for msg in m:
                for it in msg["content"] if isinstance(msg["content"], list) else []:
                    if it["type"] == "image":
                        images.append(Image.open(root / it["path"]).convert("RGB"))
                    elif it["type"] == "video":
                        fr = sorted((root / it["frames"]).glob("frame_*.png"))
                        videos.append([Image.open(f).convert("RGB") for f in fr])
        prompts_equal = texts == meta["prompts"]
        # list(...): the 4.50 processor expands the placeholders in the caller's list in place
        kw = dict(text=list(texts), return_tensors="pt", padding=True, padding_side="left")
        if images:
            kw["images"] = images
        if videos:
            kw["videos"] = videos
            kw["fps"] = [job["video_fps"]] * len(videos)
        proc.tokenizer.padding_side = "left"
        inp = proc(**kw)
        c = {"prompts_equal": prompts_equal,
             "input_ids_equal": bool(torch.equal(inp["input_ids"], ref["input_ids"])),
             "attention_mask_equal": bool(torch.equal(inp["attention_mask"], ref["attention_mask"]))}
        for k in ["pixel_values", "pixel_values_videos"]:
            if k in ref:
                c[k + "_max_abs_diff"] = float((inp[k].float() - ref[k]).abs().max())
        for k in ["image_grid_thw", "video_grid_thw"]:
            if k in ref:
                c[k + "_equal"] = bool(torch.equal(inp[k].long(), ref[k]))
        if "second_per_grid_ts" in ref:
            c["second_per_grid_ts"] = [float(x) for x in inp["second_per_grid_ts"]]
        # 2) 4.50 model on the fixture's own tensors
        feed = {k: ref[k] for k in ["input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                    "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"] if k in ref}
        with torch.no_grad():
            pos, deltas = model.get_rope_index(feed["input_ids"], feed.get("image_grid_thw"),
                                               feed.get("video_grid_thw"), feed.get("second_per_grid_ts"),
                                               feed["attention_mask"])
            model.rope_deltas = None
            o = model(**feed)
            model.rope_deltas = None
            g = model.generate(**feed, max_new_tokens=job["n_greedy"], do_sample=False)
        S = feed["input_ids"].shape[1]
        greedy = g[:, S:]
        c["position_ids_equal"] = bool(torch.equal(pos, ref["position_ids"]))
        c["rope_deltas_equal"] = bool(torch.equal(deltas.long(), ref["rope_deltas"]))
        valid = ref["attention_mask"].bool()
        # logits at padded (fully masked) positions are meaningless and differ between versions
        c["logits_max_abs_diff_valid_positions"] = float((o.logits.float() - ref["logits"])[valid].abs().max())
        c["greedy_equal"] = bool(torch.equal(greedy, ref["greedy"]))
        out["cases"][case] = c

    # 3) the 4.50 (slow, PIL) image processor on the non-multiple-of-28 image
    ref = load_file(str(root / "resize.safetensors"))
    img = Image.open(root / "media" / "img_odd.png").convert("RGB")
    ip = Qwen2VLImageProcessor(min_pixels=job["min_pixels"], max_pixels=job["max_pixels"])
    r = ip(images=[img], return_tensors="pt")
    out["resize"] = {
        "processor_class": type(ip).__name__, "resample": int(ip.resample),
        "image_grid_thw_equal": bool(torch.equal(r["image_grid_thw"].long(), ref["image_grid_thw"])),
        "max_abs_diff_vs_pixel_values_pil": float((r["pixel_values"] - ref["pixel_values_pil"]).abs().max()),
        "max_abs_diff_vs_pixel_values": float((r["pixel_values"] - ref["pixel_values"]).abs().max()),
    }

(Path(sys.argv[1]).parent / "result.json").write_text(json.dumps(out))
'''


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
def build_config(tok) -> Qwen2_5_VLConfig:
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = int(math.ceil(len(tok) / 16) * 16)
    text_config = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        use_sliding_window=False,
        attention_dropout=0.0,
    )
    vision_config = dict(
        depth=4,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        out_hidden_size=64,
        hidden_act="silu",
        in_channels=3,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[1, 3],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


@torch.no_grad()
def reinit_weights(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter with larger-than-default random values so that outputs are not
    degenerate: matrices/embeddings/conv N(0, 0.08^2), biases N(0, 0.05^2), norm weights
    1 + 0.1 N(0,1). Iterates in sorted name order with its own generator (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        elif p.ndim == 1:  # RMSNorm weights
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) * 0.08)


def v5_to_v4_key(k: str) -> str:
    """Map a transformers 5.x checkpoint key to the <=4.51 layout."""
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model.") :]
    if k.startswith("model.visual."):
        return "visual." + k[len("model.visual.") :]
    if k == "lm_head.weight":
        return k
    raise KeyError(k)


def v4_config_dict(config: Qwen2_5_VLConfig, tok) -> dict:
    """A flat transformers-4.x config.json in the shape of the real Qwen2.5-VL checkpoints
    (text fields at the top level, vision_config nested, rope_scaling type mrope)."""
    t, v = config.text_config, config.vision_config
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": t.bos_token_id,
        "eos_token_id": t.eos_token_id,
        "vision_start_token_id": config.vision_start_token_id,
        "vision_end_token_id": config.vision_end_token_id,
        "vision_token_id": tok.convert_tokens_to_ids("<|vision_pad|>"),
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "hidden_act": t.hidden_act,
        "hidden_size": t.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": t.intermediate_size,
        "max_position_embeddings": t.max_position_embeddings,
        "max_window_layers": t.num_hidden_layers,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": t.num_attention_heads,
        "num_hidden_layers": t.num_hidden_layers,
        "num_key_value_heads": t.num_key_value_heads,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": float(t.rope_parameters["rope_theta"]),
        "sliding_window": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.50.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": v.depth,
            "hidden_act": v.hidden_act,
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_chans": v.in_channels,
            "out_hidden_size": v.out_hidden_size,
            "patch_size": v.patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "spatial_patch_size": v.patch_size,
            "window_size": v.window_size,
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "tokens_per_second": v.tokens_per_second,
            "temporal_patch_size": v.temporal_patch_size,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vocab_size": t.vocab_size,
    }


def release_generation_config(tok) -> GenerationConfig:
    """generation_config.json in the shape of the released Qwen2.5-VL one (greedy in effect)."""
    eot, im_end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    return GenerationConfig(
        bos_token_id=eot,
        pad_token_id=eot,
        eos_token_id=[im_end, eot],
        do_sample=True,
        top_k=1,
        top_p=0.001,
        temperature=0.1,
        repetition_penalty=1.05,
    )


# --------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------
def _smooth_image(w: int, h: int, rng: np.random.Generator, phase: float, noise: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    r = 255 * (0.15 + 0.7 * u)
    g = 255 * (0.2 + 0.6 * v)
    b = 255 * (0.5 + 0.4 * np.sin(2 * np.pi * (u + v + phase)))
    img = np.stack([r, g, b], -1)
    # a filled circle and a rectangle with soft edges
    cx, cy, rad = w * (0.3 + 0.4 * phase), h * 0.45, min(w, h) * 0.22
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    m = np.clip(rad - d, 0, 1)[..., None]
    img = img * (1 - m) + m * np.array([30.0, 60.0, 230.0])
    x0, x1, y0, y1 = w * 0.6, w * 0.85, h * 0.15, h * 0.4
    m = (np.clip(x - x0, 0, 1) * np.clip(x1 - x, 0, 1) * np.clip(y - y0, 0, 1) * np.clip(y1 - y, 0, 1))[..., None]
    img = img * (1 - m) + m * np.array([220.0, 40.0, 40.0])
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_media(out: Path) -> dict:
    rng = np.random.default_rng(SEED)
    media = out / "media"
    (media / "video_odd").mkdir(parents=True, exist_ok=True)
    specs = {"img_a.png": (168, 140, 0.1), "img_b.png": (112, 140, 0.35), "img_c.png": (84, 56, 0.6)}
    info = {}
    for name, (w, h, ph) in specs.items():
        Image.fromarray(_smooth_image(w, h, rng, ph, 2.0)).save(media / name, optimize=True)
        info[f"media/{name}"] = {"width": w, "height": h}
    for k in range(5):  # odd frame count, non-square 112x84, the circle moves right
        fr = _smooth_image(112, 84, rng, 0.1 + 0.15 * k, 2.0)
        Image.fromarray(fr).save(media / "video_odd" / f"frame_{k:03d}.png", optimize=True)
    info["media/video_odd"] = {"width": 112, "height": 84, "frames": 5, "fps": VIDEO_FPS}
    # 100 wide x 61 high, not a multiple of 28: smooth pattern, no noise
    y, x = np.mgrid[0:61, 0:100].astype(np.float64)
    odd = np.stack(
        [
            127.5 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0),
            127.5 + 110 * np.cos((x + y) / 17.0),
            60 + 1.9 * x,
        ],
        -1,
    )
    Image.fromarray(np.clip(np.rint(odd), 0, 255).astype(np.uint8)).save(media / "img_odd.png", optimize=True)
    info["media/img_odd.png"] = {"width": 100, "height": 61}
    return info


def load_media(item: dict) -> tuple[str, object]:
    if item["type"] == "image":
        return "image", Image.open(OUT / item["path"]).convert("RGB")
    frames = sorted((OUT / item["frames"]).glob("frame_*.png"))
    return "video", [Image.open(f).convert("RGB") for f in frames]


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _img(p):
    return {"type": "image", "path": p}


def _vid(p):
    return {"type": "video", "frames": p, "fps": VIDEO_FPS}


def _txt(t):
    return {"type": "text", "text": t}


def _user(*content):
    return [{"role": "user", "content": list(content)}]


CASES = [
    # name, model folder, rope style, list of conversations (batch)
    ("one_image", "model-v5", "v4.50", [_user(_img("media/img_a.png"), _txt("What is in this picture? Describe it."))]),
    (
        "multi_image",
        "model-v5",
        "v4.50",
        [_user(_img("media/img_b.png"), _img("media/img_c.png"), _txt("Compare the two images."))],
    ),
    ("video_odd", "model-v5", "v4.50", [_user(_vid("media/video_odd"), _txt("What happens in the video?"))]),
    ("video_odd_v5", "model-v5", "v5", [_user(_vid("media/video_odd"), _txt("What happens in the video?"))]),
    (
        "image_video",
        "model-v5",
        "v4.50",
        [
            _user(
                _img("media/img_c.png"),
                _vid("media/video_odd"),
                _txt("Is the object from the image in the video?"),
            )
        ],
    ),
    (
        "batch_two",
        "model-v5",
        "v4.50",
        [
            _user(_img("media/img_c.png"), _txt("What color is the square?")),
            _user(_txt("Tell me a short story about a red fox and a blue circle on a green background.")),
        ],
    ),
    ("text_only", "model-v5", "v4.50", [_user(_txt("Hello! Write one sentence about the quick brown fox."))]),
    # extra: the tied bf16 checkpoint, loaded by 5.x with dtype=float32 (bf16 values upcast)
    ("text_only_tied_bf16", "model-tied-bf16", "v4.50", [_user(_txt("What color is the sky?"))]),
]


def run_processor(processor, conversations) -> tuple[list[str], dict]:
    # 5.x quirk: a processor loaded from a folder whose template lives only in
    # tokenizer_config.json (model-tied-bf16) has processor.chat_template None; the template is
    # then only on the tokenizer, so pass it explicitly.
    template = processor.chat_template or processor.tokenizer.chat_template
    prompts = [
        processor.apply_chat_template(c, chat_template=template, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    images, videos = [], []
    for conv in conversations:
        for msg in conv:
            for item in msg["content"]:
                if item["type"] in ("image", "video"):
                    kind, obj = load_media(item)
                    (images if kind == "image" else videos).append(obj)
    kw = dict(text=prompts, return_tensors="pt", padding=True, padding_side="left")
    if images:
        kw["images"] = images
    if videos:
        # 5.x takes the video frame rate from VideoMetadata (sampled_fps); frames are passed as-is
        # (do_sample_frames is False by default). cap_pixels_per_frame=False keeps the legacy
        # per-frame bounds (no resize here anyway) and silences the v5.22 deprecation warning.
        kw["videos"] = videos
        kw["video_metadata"] = [VideoMetadata(total_num_frames=len(v), fps=VIDEO_FPS) for v in videos]
        kw["cap_pixels_per_frame"] = False
    return prompts, processor(**kw)


class PositionRecorder:
    """Records the [3,B,L] position ids that reach the text rotary embedding (forward + every
    decode step of generate)."""

    def __init__(self, model):
        self.calls = []
        self.h = model.model.language_model.rotary_emb.register_forward_hook(self._hook)

    def _hook(self, mod, args, out):
        self.calls.append(args[1].detach().clone())

    def close(self):
        self.h.remove()


def media_key(item: dict) -> str:
    """Key of a media item in pixels.safetensors: the path used in the case messages."""
    return item["path"] if item["type"] == "image" else item["frames"]


def item_pixels(processor, item: dict) -> tuple[str, torch.Tensor]:
    """Pixel values the HF processor produces for this one media item alone."""
    _, inp = run_processor(processor, [_user(item)])
    k = "pixel_values" if item["type"] == "image" else "pixel_values_videos"
    return k, inp[k].float().contiguous()


def pixel_store(processor) -> dict:
    """{media key: pixel tensor} for every media item used by CASES."""
    store = {}
    for _, _, _, conversations in CASES:
        for conv in conversations:
            for msg in conv:
                for item in msg["content"]:
                    if item["type"] in ("image", "video") and media_key(item) not in store:
                        store[media_key(item)] = item_pixels(processor, item)[1]
    return dict(sorted(store.items()))


def pixel_sources(conversations) -> dict:
    """{"pixel_values": [keys of the images in order], "pixel_values_videos": [...]} (only keys
    that apply): the processor output is the concatenation of these store entries."""
    src = {"pixel_values": [], "pixel_values_videos": []}
    for conv in conversations:
        for msg in conv:
            for item in msg["content"]:
                if item["type"] == "image":
                    src["pixel_values"].append(media_key(item))
                elif item["type"] == "video":
                    src["pixel_values_videos"].append(media_key(item))
    return {k: v for k, v in src.items() if v}


def compute_case(model, processor, tf450: TF450, name, model_dir, style, conversations,
                 store: dict) -> tuple[dict, dict]:
    prompts, inp = run_processor(processor, conversations)
    sources = pixel_sources(conversations)
    # the shared per-item store is exact: the case's processor output is its concatenation
    for k in ["pixel_values", "pixel_values_videos"]:
        assert (k in inp) == (k in sources), (name, k)
        if k in inp:
            cat = torch.cat([store[s] for s in sources[k]], 0)
            assert torch.equal(inp[k].float(), cat), f"{name}: {k} != concatenation of {sources[k]}"
    cfg = model.config
    input_ids = inp["input_ids"].long()
    mask = inp["attention_mask"].long()
    igrid = inp.get("image_grid_thw")
    vgrid = inp.get("video_grid_thw")
    spg = inp.get("second_per_grid_ts")
    igrid = igrid.long() if igrid is not None else None
    vgrid = vgrid.long() if vgrid is not None else None
    spg = torch.as_tensor(spg, dtype=torch.float32) if spg is not None else None

    # --- the two position rules ---------------------------------------------------------
    pos450, delta450 = tf450.rope_index(cfg, input_ids, igrid, vgrid, spg, mask)
    stock_get_rope_index = type(model.model).get_rope_index.__get__(model.model)
    multimodal = igrid is not None or vgrid is not None
    if multimodal:
        pos5, delta5 = stock_get_rope_index(
            input_ids,
            mm_token_type_ids=inp["mm_token_type_ids"],
            image_grid_thw=igrid,
            video_grid_thw=vgrid,
            second_per_grid_ts=spg,
            attention_mask=mask,
        )
    else:  # 5.x never calls get_rope_index for text-only input: plain 1-D positions, delta 0
        pos5 = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[None].expand(3, -1, -1)
        delta5 = torch.zeros(input_ids.shape[0], 1, dtype=torch.long)
    valid = mask.bool()[None].expand(3, -1, -1)
    same_rule = bool(torch.equal(pos450[valid], pos5[valid]))
    # 4.50: delta = max+1 - S (S = padded length); 5.x: delta = max+1 - (unpadded length), so a
    # left-padded row's 5.x delta is larger by its pad count. (5.x generate does not use the
    # deltas: it continues from the last prompt position + 1, which gives the same positions.)
    n_pad = (mask == 0).sum(-1, keepdim=True)
    deltas_consistent = bool(torch.equal(delta5.long(), delta450.long() + n_pad))
    if vgrid is None:
        assert same_rule and deltas_consistent, f"{name}: 4.50 and 5.x positions differ without a video"
    if style == "v4.50":
        pos, delta = pos450.long(), delta450.long()

        def patched(input_ids, mm_token_type_ids=None, image_grid_thw=None, video_grid_thw=None,
                    second_per_grid_ts=None, attention_mask=None, **kwargs):
            return tf450.rope_index(cfg, input_ids, image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask)

        model.model.get_rope_index = patched  # instance attribute: used by forward AND generate
    else:
        pos, delta = pos5.long(), delta5.long()
        model.model.__dict__.pop("get_rope_index", None)

    feed = {k: inp[k] for k in ["input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                "image_grid_thw", "pixel_values_videos", "video_grid_thw"] if k in inp}
    if spg is not None:
        feed["second_per_grid_ts"] = spg

    try:
        with torch.no_grad():
            # --- prefill forward ---------------------------------------------------------------
            rec = PositionRecorder(model)
            model.model.rope_deltas = None
            out = model(**feed, output_hidden_states=True, use_cache=False)
            rec.close()
            used = rec.calls[0]
            assert torch.equal(used[valid], pos[valid]), f"{name}: forward used other positions"
            logits = out.logits.float()
            hidden = out.hidden_states[-1].float()
            assert torch.allclose(model.lm_head(hidden), logits, atol=1e-5), "hidden_states[-1] is not the lm_head input"
            # --- vision tower outputs ----------------------------------------------------------
            embeds = {}
            if "pixel_values" in inp:
                embeds["image_embeds"] = torch.cat(
                    model.model.get_image_features(inp["pixel_values"], igrid).pooler_output, 0
                ).float()
            if "pixel_values_videos" in inp:
                embeds["video_embeds"] = torch.cat(
                    model.model.get_video_features(inp["pixel_values_videos"], vgrid).pooler_output, 0
                ).float()
            # --- greedy generation (eos disabled: exactly N_GREEDY tokens) -----------------------
            rec = PositionRecorder(model)
            model.model.rope_deltas = None
            gen = model.generate(**feed, max_new_tokens=N_GREEDY, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
            rec.close()
    finally:
        model.model.__dict__.pop("get_rope_index", None)
        model.model.rope_deltas = None

    S = input_ids.shape[1]
    greedy = gen.sequences[:, S:]
    assert greedy.shape[1] == N_GREEDY, greedy.shape
    step_logits = torch.stack([x.float() for x in gen.logits], 1)  # [B, N, V], raw logits
    # no logits processor touched anything: every token is the argmax of its raw logits
    assert torch.equal(step_logits.argmax(-1), greedy), f"{name}: greedy != argmax(logits)"
    assert torch.allclose(step_logits[:, 0], logits[:, -1], atol=1e-4), f"{name}: generate prefill != forward"
    top2 = step_logits.topk(2, -1).values
    min_margin = float((top2[..., 0] - top2[..., 1]).min())
    for b in range(greedy.shape[0]):
        assert len(set(greedy[b].tolist())) >= 2, f"{name}: degenerate greedy output {greedy[b].tolist()}"
    # position ids seen by the decode steps (inputs = greedy[:, :-1])
    dec = [c for c in rec.calls[1:]]
    decode_pos = torch.cat(dec, -1).long() if dec else torch.zeros(3, greedy.shape[0], 0, dtype=torch.long)
    assert torch.equal(rec.calls[0][valid], pos[valid]), f"{name}: generate prefill used other positions"

    tensors = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "mm_token_type_ids": inp["mm_token_type_ids"].long(),
    }
    # pixel_values / pixel_values_videos are not stored here: see pixel_sources
    if "pixel_values" in inp:
        tensors["image_grid_thw"] = igrid
    if "pixel_values_videos" in inp:
        tensors["video_grid_thw"] = vgrid
        tensors["second_per_grid_ts"] = spg
    tensors["position_ids"] = pos
    tensors["rope_deltas"] = delta
    tensors.update(embeds)
    tensors["logits"] = logits
    tensors["hidden"] = hidden
    tensors["greedy"] = greedy.long()
    tensors["greedy_logits_last"] = step_logits[:, -1]
    tensors["decode_position_ids"] = decode_pos
    tensors = {k: v.contiguous() for k, v in tensors.items()}

    tok = processor.tokenizer
    meta = {
        "name": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "model": model_dir,
        "load_dtype": "float32",
        "rope_index": style,
        "rope_index_note": (
            "positions from transformers 4.50 get_rope_index (text after a vision span starts at "
            "max(all positions so far)+1), patched into 5.x for forward and generate"
            if style == "v4.50"
            else "stock transformers 5.x get_rope_index (text after a vision span starts at "
            "span_start + max(grid_h, grid_w)/merge)"
        ),
        "rules_agree_on_this_input": same_rule,
        "rope_deltas_v4.50": delta450.long().flatten().tolist(),
        "rope_deltas_v5": delta5.long().flatten().tolist(),
        "rope_deltas_note": "4.50: max+1-S with S the padded length; 5.x: max+1-(unpadded length)",
        "messages": conversations,
        "prompts": prompts,
        "padding_side": "left",
        "video_fps": VIDEO_FPS if vgrid is not None else None,
        "generation": {
            "max_new_tokens": N_GREEDY,
            "do_sample": False,
            "eos": "disabled (exactly max_new_tokens generated ids, prompt not included)",
            "min_top1_top2_logit_margin": min_margin,
            "decoded": [tok.decode(g, skip_special_tokens=False) for g in greedy.tolist()],
        },
        "tensor_names": list(tensors.keys()),
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in tensors.items()},
        "pixel_sources": sources,
        "pixel_shapes": {k: [int(inp[k].shape[0]), int(inp[k].shape[1])] for k in sources},
        "notes": {
            "pixel_sources": "pixel_values / pixel_values_videos [N,1176] float32 = concatenation (dim 0), in "
            "order, of the listed entries of ../pixels.safetensors (each: the processor output for that "
            "media item alone)",
            "position_ids": "[3,B,S] (t,h,w); padded slots hold 1 (4.50 rule) or 0 (5.x rule) and are masked",
            "rope_deltas": "[B,1]: max(position)+1 - S; decode position of absolute index i is i + delta",
            "hidden": "final-norm hidden state (last element of output_hidden_states), lm_head input",
            "greedy_logits_last": "raw logits [B,V] that produced greedy[:, -1]",
            "decode_position_ids": "[3,B,N-1] positions used by generate for the inputs greedy[:, :-1]",
            "image_embeds": "vision tower (merger) output for all images of the batch, in order",
            "video_embeds": "vision tower output for all videos of the batch, in order",
        },
    }
    return meta, tensors


# --------------------------------------------------------------------------------------------
# smart_resize / resize cases
# --------------------------------------------------------------------------------------------
SMART_RESIZE_INPUTS = [
    # (height, width, min_pixels, max_pixels)
    (168, 224, MIN_PIXELS, MAX_PIXELS),  # exact multiples, unchanged
    (42, 70, MIN_PIXELS, MAX_PIXELS),  # 1.5 x 28 and 2.5 x 28: round half to even (2, 2)
    (70, 98, MIN_PIXELS, MAX_PIXELS),  # 2.5, 3.5 -> 2, 4
    (98, 126, MIN_PIXELS, MAX_PIXELS),  # 3.5, 4.5 -> 4, 4
    (126, 42, MIN_PIXELS, MAX_PIXELS),  # 4.5, 1.5 -> 4, 2
    (61, 100, MIN_PIXELS, MAX_PIXELS),  # media/img_odd.png
    (56, 56, MIN_PIXELS, MAX_PIXELS),  # exactly min_pixels
    (28, 28, MIN_PIXELS, MAX_PIXELS),  # below min_pixels -> scaled up
    (30, 40, MIN_PIXELS, MAX_PIXELS),  # below min_pixels
    (29, 300, MIN_PIXELS, MAX_PIXELS),
    (20, 100, MIN_PIXELS, MAX_PIXELS),  # side < 28: 4.50 raises, 5.x does not
    (500, 500, MIN_PIXELS, MAX_PIXELS),  # above max_pixels -> scaled down
    (1080, 1920, MIN_PIXELS, MAX_PIXELS),
    (1080, 1920, MIN_PIXELS, 12845056),  # release max_pixels
    (4000, 3000, MIN_PIXELS, 1003520),  # class-default max_pixels
    (449, 449, MIN_PIXELS, MAX_PIXELS),
    (30, 5000, MIN_PIXELS, 50000),  # max branch floors a side to 0 in 4.50, 28 in 5.x
    (28, 5600, MIN_PIXELS, MAX_PIXELS),  # aspect 200: allowed
    (28, 5628, MIN_PIXELS, MAX_PIXELS),  # aspect > 200: raises
    (5000, 20, MIN_PIXELS, MAX_PIXELS),  # aspect 250: raises
    (300, 1, MIN_PIXELS, MAX_PIXELS),  # extreme: raises
]


def _call_resize(fn, h, w, mn, mx):
    try:
        rh, rw = fn(h, w, factor=28, min_pixels=mn, max_pixels=mx)
        return {"height": int(rh), "width": int(rw)}
    except ValueError as e:
        return {"error": True, "message": str(e)}


def processor_cases(tf450: TF450, out: Path) -> None:
    cases = []
    for h, w, mn, mx in SMART_RESIZE_INPUTS:
        r5 = _call_resize(smart_resize_v5, h, w, mn, mx)
        r4 = _call_resize(tf450.smart_resize, h, w, mn, mx)
        cases.append({"height": h, "width": w, "min_pixels": mn, "max_pixels": mx, "factor": 28, "v5": r5, "v4.50": r4})

    img = Image.open(out / "media" / "img_odd.png").convert("RGB")
    fast = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    slow = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    rf = fast(images=[img], return_tensors="pt")
    rs = slow(images=[img], return_tensors="pt")
    assert torch.equal(rf["image_grid_thw"], rs["image_grid_thw"])
    tensors = {
        "pixel_values": rf["pixel_values"].float().contiguous(),
        "image_grid_thw": rf["image_grid_thw"].long().contiguous(),
        "pixel_values_pil": rs["pixel_values"].float().contiguous(),
    }
    save_file(tensors, str(out / "resize.safetensors"))
    doc = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tf450_version": tf450.version,
        "smart_resize_source": {
            "v5": "transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize",
            "v4.50": "smart_resize of transformers 4.50.0 (same module), executed from its source",
        },
        "smart_resize": cases,
        "resize_image": {
            "path": "media/img_odd.png",
            "width": img.width,
            "height": img.height,
            "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS,
            "tensors": {
                "pixel_values": {
                    "processor_class": type(fast).__name__,
                    "backend": "torchvision (what AutoImageProcessor/AutoProcessor give in 5.x)",
                    "resample": f"{PILImageResampling(int(fast.resample)).name} ({int(fast.resample)})",
                    "resize_call": "torchvision.transforms.v2.functional.resize(interpolation=BICUBIC, "
                    "antialias=True) on the uint8 tensor, then rescale+normalize in float32",
                },
                "pixel_values_pil": {
                    "processor_class": type(slow).__name__,
                    "backend": "PIL (5.x 'pil' backend; compare with the 4.50 slow processor in crosscheck_tf450)",
                    "resample": f"{PILImageResampling(int(slow.resample)).name} ({int(slow.resample)})",
                },
                "image_grid_thw": {"note": "same for both"},
            },
            "pil_vs_torchvision_max_abs_diff": float((rf["pixel_values"] - rs["pixel_values"]).abs().max()),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
        },
    }
    (out / "processor_cases.json").write_text(json.dumps(doc, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoints(model, processor, tok, tf450: TF450, stage: Path) -> dict:
    info = {}
    gen_cfg = release_generation_config(tok)

    # --- model-v5: transformers 5.x save_pretrained of model + processor --------------------
    d5 = OUT / "model-v5"
    model.generation_config = gen_cfg
    model.save_pretrained(d5)
    processor.save_pretrained(d5)  # 5.x: processor_config.json (nested image/video configs), chat_template.jinja
    # 5.x's processor.save_pretrained writes no preprocessor_config.json; write the image
    # processor's own file as well (what real checkpoints ship). Real checkpoints also carry
    # min_pixels/max_pixels at its top level, where 5.x writes only size{shortest_edge,
    # longest_edge}: add the legacy keys too (5.x reads both).
    processor.image_processor.save_pretrained(d5)
    pp = json.loads((d5 / "preprocessor_config.json").read_text())
    pp.setdefault("min_pixels", MIN_PIXELS)
    pp.setdefault("max_pixels", MAX_PIXELS)
    (d5 / "preprocessor_config.json").write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")

    # --- model-v4: 4.x layout ---------------------------------------------------------------
    d4 = OUT / "model-v4"
    d4.mkdir(parents=True)
    sd = {v5_to_v4_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    names = sorted(sd)
    total = sum(sd[k].numel() * sd[k].element_size() for k in names)
    # two shards, split where the running size passes half of the total (like max_shard_size)
    shard1, acc = [], 0
    for k in names:
        if acc >= total / 2:
            break
        shard1.append(k)
        acc += sd[k].numel() * sd[k].element_size()
    shards = [shard1, [k for k in names if k not in set(shard1)]]
    weight_map = {}
    for i, keys in enumerate(shards):
        fn = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: sd[k] for k in keys}, str(d4 / fn), metadata={"format": "pt"})
        weight_map.update({k: fn for k in keys})
    idx = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (d4 / "model.safetensors.index.json").write_text(json.dumps(idx, indent=2) + "\n")
    (d4 / "config.json").write_text(json.dumps(v4_config_dict(model.config, tok), indent=2) + "\n")
    # the released file's keys only (4.50 rejects some None fields of a 5.x to_dict())
    g4 = {k: getattr(gen_cfg, k) for k in ["bos_token_id", "pad_token_id", "do_sample", "eos_token_id",
                                           "repetition_penalty", "temperature", "top_p", "top_k"]}
    g4["transformers_version"] = "4.50.0"
    (d4 / "generation_config.json").write_text(json.dumps(g4, indent=2, sort_keys=True) + "\n")
    # tokenizer + preprocessor + chat_template.json written by transformers 4.50 itself
    r = tf450.run(
        {
            "mode": "save_v4_processor",
            "tokenizer_stage": str(stage),
            "out_dir": str(d4),
            "chat_template": QWEN25VL_CHAT_TEMPLATE,
            "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS,
        }
    )
    info["model_v4_files"] = r["files"]
    info["model_v4_tokenizer_class_in_tf450"] = r["tokenizer_class"]
    assert (d4 / "chat_template.json").exists() and not (d4 / "chat_template.jinja").exists()

    # --- model-tied-bf16 ---------------------------------------------------------------------
    dt = OUT / "model-tied-bf16"
    tied = tied_model(model, torch.bfloat16)
    tied.generation_config = gen_cfg
    tied.save_pretrained(dt)
    tok_t = copy.deepcopy(tok)
    tok_t.chat_template = QWEN25VL_CHAT_TEMPLATE
    tok_t.save_pretrained(dt, save_jinja_files=False)  # template stays in tokenizer_config.json
    processor.image_processor.save_pretrained(dt)  # preprocessor_config.json only (no video config)
    pp = json.loads((dt / "preprocessor_config.json").read_text())
    pp.setdefault("min_pixels", MIN_PIXELS)
    pp.setdefault("max_pixels", MAX_PIXELS)
    (dt / "preprocessor_config.json").write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")
    tc = json.loads((dt / "tokenizer_config.json").read_text())
    assert tc.get("chat_template") == QWEN25VL_CHAT_TEMPLATE
    assert not (dt / "chat_template.jinja").exists() and not (dt / "chat_template.json").exists()
    keys = load_file(str(dt / "model.safetensors")).keys()
    assert "lm_head.weight" not in keys
    return info


def tied_model(model, dtype):
    cfg = copy.deepcopy(model.config)
    cfg.tie_word_embeddings = True
    m = Qwen2_5_VLForConditionalGeneration(cfg)
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    m.tie_weights()
    assert m.lm_head.weight.data_ptr() == m.model.language_model.embed_tokens.weight.data_ptr()
    return m.to(dtype).eval()


def verify_checkpoints(model, processor) -> dict:
    """Reload the three folders with 5.x from_pretrained and compare logits with the originals."""
    prompts, inp = run_processor(processor, CASES[0][3])
    feed = {k: inp[k] for k in ["input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"]}
    res = {}
    with torch.no_grad():
        model.model.rope_deltas = None
        ref = model(**feed).logits
        tied_f32 = tied_model(model, torch.float32)
        tied_ref = tied_f32(**feed).logits
        # same, with only the parameters rounded to bf16 (casting the whole module would also
        # round the rotary inv_freq buffers)
        tied_rounded = tied_model(model, torch.float32)
        for prm in tied_rounded.parameters():
            prm.copy_(prm.to(torch.bfloat16).to(torch.float32))
        tied_rounded_ref = tied_rounded(**feed).logits
    for d in ["model-v5", "model-v4", "model-tied-bf16"]:
        m, li = Qwen2_5_VLForConditionalGeneration.from_pretrained(OUT / d, dtype=torch.float32, output_loading_info=True)
        m.eval()
        assert not li["missing_keys"] and not li["unexpected_keys"] and not li.get("mismatched_keys"), (d, li)
        p = AutoProcessor.from_pretrained(OUT / d)
        # the saved processor files reproduce the in-memory processor (images and video)
        for conv in (CASES[0][3], CASES[4][3]):
            a_prompts, a_inp = run_processor(processor, conv)
            p_prompts, p_inp = run_processor(p, conv)
            assert p_prompts == a_prompts and set(p_inp.keys()) == set(a_inp.keys()), d
            for k in a_inp:
                assert torch.equal(torch.as_tensor(p_inp[k]), torch.as_tensor(a_inp[k])), (d, k)
        with torch.no_grad():
            lg = m(**feed).logits
        if d == "model-tied-bf16":
            assert m.lm_head.weight.data_ptr() == m.model.language_model.embed_tokens.weight.data_ptr()
            exact = float((lg - tied_rounded_ref).abs().max())
            res[d] = {
                "max_abs_diff_vs_tied_f32_with_bf16_rounded_weights": exact,
                "max_abs_diff_vs_tied_f32": float((lg - tied_ref).abs().max()),
                "lm_head_is_embed_tokens": True,
            }
            assert exact == 0.0, exact
        else:
            diff = float((lg - ref).abs().max())
            res[d] = {"max_abs_diff_vs_original": diff}
            assert diff == 0.0, (d, diff)
        res[d]["processor"] = [type(p).__name__, type(p.image_processor).__name__, type(p.video_processor).__name__,
                               type(p.tokenizer).__name__]
    return res


# --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf450", default=os.environ.get("QWEN25VL_TF450", "/tmp/tf450"),
                    help="directory holding transformers 4.50.0 (pip install --target)")
    ap.add_argument("--skip-tf450-crosscheck", action="store_true",
                    help="do not rerun the cases under transformers 4.50 (the 4.50 rope rule is still used)")
    args = ap.parse_args()

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.manual_seed(SEED)
    tf450 = TF450(Path(args.tf450))

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    with tempfile.TemporaryDirectory() as td:
        stage = Path(td) / "tokenizer"
        build_tokenizer_stage(stage)
        tok = AutoTokenizer.from_pretrained(stage)
        assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
        image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        processor = Qwen2_5_VLProcessor(
            image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
            chat_template=QWEN25VL_CHAT_TEMPLATE,
        )

        config = build_config(tok)
        torch.manual_seed(SEED)
        model = Qwen2_5_VLForConditionalGeneration(config)
        reinit_weights(model, SEED)
        model.eval()

        media_info = write_media(OUT)
        ckpt_info = save_checkpoints(model, processor, tok, tf450, stage)
    load_info = verify_checkpoints(model, processor)

    # greedy generation without eos: clean generation config on the in-memory model
    model.generation_config = GenerationConfig(
        do_sample=False, bos_token_id=config.text_config.bos_token_id, pad_token_id=config.text_config.pad_token_id,
        eos_token_id=None,
    )
    tied_loaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(OUT / "model-tied-bf16", dtype=torch.float32).eval()
    tied_loaded.generation_config = copy.deepcopy(model.generation_config)
    models = {"model-v5": model, "model-tied-bf16": tied_loaded}

    store = pixel_store(processor)
    save_file(store, str(OUT / "pixels.safetensors"))
    (OUT / "cases").mkdir()
    summaries = {}
    for name, mdir, style, conv in CASES:
        meta, tensors = compute_case(models[mdir], processor, tf450, name, mdir, style, conv, store)
        save_file(tensors, str(OUT / "cases" / f"{name}.safetensors"))
        (OUT / "cases" / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        summaries[name] = meta

    processor_cases(tf450, OUT)

    crosscheck = None
    if not args.skip_tf450_crosscheck:
        v450_cases = [n for n, mdir, style, _ in CASES if style == "v4.50" and mdir == "model-v5"]
        crosscheck = tf450.run(
            {
                "mode": "crosscheck",
                "fixtures": str(OUT),
                "model": "model-v4",
                "cases": v450_cases,
                "min_pixels": MIN_PIXELS,
                "max_pixels": MAX_PIXELS,
                "n_greedy": N_GREEDY,
                "video_fps": VIDEO_FPS,
                "pad_token_id": config.text_config.pad_token_id,
                "bos_token_id": config.text_config.bos_token_id,
            }
        )
        for n, c in crosscheck["cases"].items():
            meta = summaries[n]
            meta["crosscheck_tf450"] = {"transformers_version": crosscheck["transformers_version"],
                                        "model": "model-v4", **c}
            (OUT / "cases" / f"{n}.json").write_text(json.dumps(meta, indent=1) + "\n")
        pc = json.loads((OUT / "processor_cases.json").read_text())
        pc["resize_image"]["crosscheck_tf450"] = {"transformers_version": crosscheck["transformers_version"],
                                                  **crosscheck["resize"]}
        (OUT / "processor_cases.json").write_text(json.dumps(pc, indent=1) + "\n")

    manifest = {
        "generator": "tools/reference/make_qwen25vl_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "tf450_version": tf450.version,
        "tf450_modeling_sha256": tf450.modeling_sha256,
        "seed": SEED,
        "tokenizer": {
            "len": len(tok),
            "bpe_vocab": BPE_VOCAB_SIZE,
            "special_token_ids": {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS},
            "eos_token": tok.eos_token,
            "pad_token": tok.pad_token,
        },
        "vocab_size": config.text_config.vocab_size,
        "media": media_info,
        "pixels": {"file": "pixels.safetensors",
                   "note": "one float32 [patches,1176] tensor per media item, keyed by its path in the case "
                           "messages; the processor output for that item alone",
                   "shapes": {k: list(v.shape) for k, v in store.items()}},
        "checkpoints": {**ckpt_info, "reload_checks_5x": load_info},
        "cases": [n for n, *_ in CASES],
        "crosscheck_tf450": crosscheck["cases"] if crosscheck else None,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")
    if crosscheck:
        for n, c in crosscheck["cases"].items():
            print(n, {k: v for k, v in c.items()})


if __name__ == "__main__":
    main()
