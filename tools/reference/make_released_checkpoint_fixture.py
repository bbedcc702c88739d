#!/usr/bin/env python3
"""A tiny 4DThinker checkpoint folder laid out as the released ones (`model/dift/checkpoints/`,
`model/4drl/...`): what the fork's transformers 4.50 writes when DIFT / 4DRL save a model.

Run from the repository root, in an environment with transformers 4.50.0 (no torch needed):

    python3 -m venv /tmp/venv-released
    /tmp/venv-released/bin/pip install transformers==4.50.0 pillow jinja2
    /tmp/venv-released/bin/python tools/reference/make_released_checkpoint_fixture.py

It deletes and rewrites tests/fixtures/released/checkpoint/ (about 0.5 MB) from
tests/fixtures/latent/model/ (the tiny latent-imagery model: 5.x config.json, f32 weights).
Deterministic: two runs give byte-identical files. Takes about 1 s.

How it is made (the steps of 4DThinker's dift/src/main.py, @647ed39)
----------------------------------------------------------------------
1. A *base* folder is staged the way the public Qwen2.5-VL-*-Instruct repos look: flat
   config.json (text fields at the top, `rope_scaling {type: mrope}`, vision_config with
   `in_chans` / `spatial_patch_size`), chat_template.json, preprocessor_config.json,
   generation_config.json, and the tokenizer without the three latent tokens.
2. transformers 4.50 itself then does what main.py does:
   `AutoProcessor.from_pretrained(base)`; `tokenizer.add_tokens(<|latent_pad|>,
   <|latent_start|>, <|latent_end|>, special_tokens=True)`; `Qwen2_5_VLConfig.from_pretrained`;
   the fork's attributes `compress_strategy`, `latent_size`, `stage`, `ce_loss_weight`,
   `sim_loss_weight`, `latent_token_id`, `latent_start_id`, `latent_end_id`;
   `torch_dtype=bfloat16`; `resize_token_embeddings(len(tokenizer))` (vocab_size becomes
   len(tokenizer) = 369, the embedding and lm_head rows are cut to that).
3. `trainer.save_model` / `Trainer._save_checkpoint` is reproduced without torch:
   `config.save_pretrained` and `generation_config.save_pretrained` (4.50's own code; the
   recorded version is set to the fork's "4.50.0.dev0"); the weights as bf16 safetensors in two
   shards, split by huggingface_hub's `split_state_dict_into_shards_factory` (what 4.50's
   `save_pretrained` calls) with `model-0000N-of-00002.safetensors` names, `{"format": "pt"}`
   metadata and 4.50's `model.safetensors.index.json` (`json.dumps(index, indent=2,
   sort_keys=True)`); `processor.save_pretrained` (tokenizer files, chat_template.json,
   preprocessor_config.json; the 4DRL trainer's processing_class is the processor); a real
   `trainer_state.json` (4.50's `TrainerState.save_to_json`). The torch pickles a checkpoint
   folder also holds (`training_args.bin`, `optimizer.pt`, `scheduler.pt`, `rng_state.pth`, and
   DeepSpeed's `latest`, `global_step1/`, `zero_to_fp32.py`) are short placeholder files: fourd
   never reads them, it only has to leave them alone.

Weights: the latent fixture's f32 tensors, under the 4.50 names (`model.embed_tokens`,
`model.layers.N.*`, `model.norm`, `visual.*`, `lm_head`), embed_tokens and lm_head cut to the
first 369 rows, rounded to bfloat16 (round to nearest even, what torch's `.to(torch.bfloat16)`
does; done in numpy on the f32 bits, since numpy has no bf16) and written with the `safetensors`
package's `serialize_file`. So the fixture holds the same numbers as tests/fixtures/latent/model,
rounded to bf16: a model built from the latent fixture with its weights rounded the same way gives
identical logits (crates/fourd-model/tests/released_checkpoint.rs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import huggingface_hub  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub import split_state_dict_into_shards_factory  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformers import AutoProcessor, GenerationConfig, Qwen2_5_VLConfig  # noqa: E402
from transformers.trainer_callback import TrainerState  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "tests/fixtures/latent/model"
OUT = REPO / "tests/fixtures/released/checkpoint"

# What the fork reports (dift/transformers/src/transformers/__init__.py).
FORK_VERSION = "4.50.0.dev0"
# What the public Qwen2.5-VL-3B-Instruct config.json records.
BASE_VERSION = "4.41.2"
LATENT_TOKENS = ["<|latent_pad|>", "<|latent_start|>", "<|latent_end|>"]
# dift/train.sh defaults.
FORK_ATTRIBUTES = {
    "compress_strategy": "average",
    "latent_size": 4,
    "stage": "stage1",
    "ce_loss_weight": 0.1,
    "sim_loss_weight": 1.0,
}
SHARDS = 2


def read_json(p: Path):
    return json.loads(p.read_text())


def write_json(p: Path, v) -> None:
    p.write_text(json.dumps(v, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# 1. The base model folder (a public Qwen2.5-VL-*-Instruct repo, in miniature)
# --------------------------------------------------------------------------------------------


def base_config(src: dict) -> dict:
    """The flat config.json of the public Qwen2.5-VL releases, with the latent fixture's sizes."""
    t, v = src["text_config"], src["vision_config"]
    rope = t["rope_parameters"]
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": t["attention_dropout"],
        "bos_token_id": t["bos_token_id"],
        "eos_token_id": t["eos_token_id"],
        "vision_start_token_id": src["vision_start_token_id"],
        "vision_end_token_id": src["vision_end_token_id"],
        "vision_token_id": src["image_token_id"] - 1,  # <|vision_pad|>, checked below
        "image_token_id": src["image_token_id"],
        "video_token_id": src["video_token_id"],
        "hidden_act": t["hidden_act"],
        "hidden_size": t["hidden_size"],
        "initializer_range": t["initializer_range"],
        "intermediate_size": t["intermediate_size"],
        "max_position_embeddings": t["max_position_embeddings"],
        "max_window_layers": t["num_hidden_layers"],
        "model_type": "qwen2_5_vl",
        "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_key_value_heads": t["num_key_value_heads"],
        "rms_norm_eps": t["rms_norm_eps"],
        "rope_theta": rope["rope_theta"],
        "sliding_window": 32768,
        "tie_word_embeddings": src["tie_word_embeddings"],
        "torch_dtype": "bfloat16",
        "transformers_version": BASE_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": v["depth"],
            "hidden_act": v["hidden_act"],
            "hidden_size": v["hidden_size"],
            "intermediate_size": v["intermediate_size"],
            "num_heads": v["num_heads"],
            "in_chans": v["in_channels"],
            "out_hidden_size": v["out_hidden_size"],
            "patch_size": v["patch_size"],
            "spatial_merge_size": v["spatial_merge_size"],
            "spatial_patch_size": v["patch_size"],
            "window_size": v["window_size"],
            "fullatt_block_indexes": v["fullatt_block_indexes"],
            "tokens_per_second": v["tokens_per_second"],
            "temporal_patch_size": v["temporal_patch_size"],
        },
        "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
        "vocab_size": t["vocab_size"],
    }


def stage_base(base: Path) -> dict:
    """Writes the base folder; returns the source config (5.x layout)."""
    src = read_json(SRC / "config.json")
    cfg = base_config(src)
    write_json(base / "config.json", cfg)
    # The tokenizer as released by Qwen: everything but the three latent tokens, which the fork
    # adds itself.
    tok = read_json(SRC / "tokenizer.json")
    tok["added_tokens"] = [a for a in tok["added_tokens"] if a["content"] not in LATENT_TOKENS]
    (base / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    specials = [a["content"] for a in tok["added_tokens"]]
    assert tok["added_tokens"][0]["content"] == "<|endoftext|>", specials
    vision_pad = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|vision_pad|>")
    assert vision_pad == cfg["vision_token_id"], (vision_pad, cfg["vision_token_id"])
    write_json(
        base / "tokenizer_config.json",
        {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "additional_special_tokens": specials[1:],
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "errors": "replace",
            "model_max_length": 32768,
            "split_special_tokens": False,
        },
    )
    write_json(
        base / "chat_template.json",
        {"chat_template": (SRC / "chat_template.jinja").read_text()},
    )
    pp = read_json(SRC / "preprocessor_config.json")
    keep = ["do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std",
            "max_pixels", "merge_size", "min_pixels", "patch_size", "resample", "rescale_factor",
            "temporal_patch_size"]
    pre = {k: pp[k] for k in keep}
    pre["image_processor_type"] = "Qwen2VLImageProcessor"
    pre["processor_class"] = "Qwen2_5_VLProcessor"
    write_json(base / "preprocessor_config.json", pre)
    gen = read_json(SRC / "generation_config.json")
    gen["transformers_version"] = BASE_VERSION
    write_json(base / "generation_config.json", gen)
    return src


# --------------------------------------------------------------------------------------------
# 2. Weights: 4.50 names, the resized vocabulary, bf16, two shards
# --------------------------------------------------------------------------------------------


def legacy_name(k: str) -> str:
    """The transformers <= 4.51 name of a tensor saved under either layout."""
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model."):]
    if k.startswith("model.visual."):
        return "visual." + k[len("model.visual."):]
    return k


def module_order(name: str):
    """The order of Qwen2_5_VLForConditionalGeneration.state_dict() in 4.50: the vision tower,
    then the language model, then lm_head; numbered blocks / layers by number."""
    group = 0 if name.startswith("visual.") else 2 if name.startswith("lm_head") else 1
    return (group, [int(p) if p.isdigit() else p for p in re.split(r"\.", name)])


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even like torch."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert np.isfinite(x).all()
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def bf16_spec(bits: np.ndarray):
    """A bf16 tensor (its uint16 bit patterns) as `safetensors.serialize_file` takes it: a
    `TensorSpec` from safetensors 0.8 on, a dict with the bytes before. `bits` must stay alive
    until the file is written."""
    assert bits.dtype == np.uint16 and bits.flags["C_CONTIGUOUS"]
    if hasattr(safetensors, "TensorSpec"):
        return safetensors.TensorSpec(dtype="bfloat16", shape=list(bits.shape),
                                      data_ptr=bits.ctypes.data, data_len=bits.nbytes)
    return {"dtype": "bfloat16", "shape": list(bits.shape), "data": bits.tobytes()}


def write_weights(out: Path, vocab: int) -> dict:
    raw = load_file(str(SRC / "model.safetensors"))
    state = {}
    for k in sorted(raw, key=lambda k: module_order(legacy_name(k))):
        v = raw[k]
        name = legacy_name(k)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            v = v[:vocab]  # resize_token_embeddings(len(tokenizer)) keeps the first rows
        state[name] = to_bf16_bits(v)
    split = split_state_dict_into_shards_factory(
        state,
        get_storage_size=lambda a: a.nbytes,
        filename_pattern="model{suffix}.safetensors",
        # like max_shard_size="5GB" on the 3B (two shards), scaled to the tiny model
        max_shard_size=sum(a.nbytes for a in state.values()) * 3 // 5,
    )
    assert split.is_sharded and len(split.filename_to_tensors) == SHARDS, split.filename_to_tensors.keys()
    for fname, names in split.filename_to_tensors.items():
        tensors = {n: bf16_spec(state[n]) for n in names}
        safetensors.serialize_file(tensors, str(out / fname), metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return state


def check_weights(out: Path, state: dict) -> None:
    """Re-reads every shard through its header and compares the stored bits."""
    index = read_json(out / "model.safetensors.index.json")
    assert set(index["weight_map"]) == set(state)
    total = 0
    for fname in sorted(set(index["weight_map"].values())):
        data = (out / fname).read_bytes()
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        assert header.pop("__metadata__") == {"format": "pt"}
        for name, info in header.items():
            assert index["weight_map"][name] == fname and info["dtype"] == "BF16", (name, info)
            lo, hi = info["data_offsets"]
            got = np.frombuffer(data[8 + n + lo:8 + n + hi], dtype=np.uint16).reshape(info["shape"])
            assert np.array_equal(got, state[name]), name
            total += hi - lo
    assert total == index["metadata"]["total_size"], (total, index["metadata"])


# --------------------------------------------------------------------------------------------
# 3. The fork's steps, and what the Trainer writes
# --------------------------------------------------------------------------------------------


def save_like_the_fork(base: Path, out: Path) -> dict:
    # dift/src/main.py
    processor = AutoProcessor.from_pretrained(base)
    for t in LATENT_TOKENS:
        processor.tokenizer.add_tokens(t, special_tokens=True)
    config = Qwen2_5_VLConfig.from_pretrained(base)
    for k, v in FORK_ATTRIBUTES.items():
        setattr(config, k, v)
    # from_pretrained(..., torch_dtype=torch.bfloat16); save_pretrained records the model's dtype.
    config.torch_dtype = "bfloat16"
    # model.resize_token_embeddings(len(processor.tokenizer)) (4.50 updates the text config).
    config.get_text_config().vocab_size = len(processor.tokenizer)
    ids = {t: processor.tokenizer(t)["input_ids"] for t in LATENT_TOKENS}
    assert all(len(v) == 1 for v in ids.values()), ids
    config.latent_token_id = ids["<|latent_pad|>"][0]
    config.latent_start_id = ids["<|latent_start|>"][0]
    config.latent_end_id = ids["<|latent_end|>"][0]
    generation_config = GenerationConfig.from_pretrained(base)

    # trainer.save_model -> model.save_pretrained + processing_class.save_pretrained
    import transformers.configuration_utils as cu
    import transformers.generation.configuration_utils as gu

    cu.__version__ = gu.__version__ = FORK_VERSION
    config.save_pretrained(out)
    generation_config.save_pretrained(out)
    processor.save_pretrained(out)
    return {"vocab_size": len(processor.tokenizer), "latent_ids": {k: v[0] for k, v in ids.items()}}


PLACEHOLDER = (
    "placeholder for the torch pickle the Hugging Face Trainer writes here ({what}); "
    "fourd never reads it (tools/reference/make_released_checkpoint_fixture.py)\n"
)


def trainer_leftovers(out: Path) -> None:
    """What Trainer._save_checkpoint adds to a checkpoint-N folder (and save_model's
    training_args.bin), plus DeepSpeed ZeRO's files (dift/train.sh trains with ZeRO-2)."""
    state = TrainerState(
        epoch=1.0,
        global_step=1,
        max_steps=1,
        logging_steps=20,
        save_steps=1000,
        num_train_epochs=1,
        train_batch_size=1,
        log_history=[{"epoch": 1.0, "grad_norm": 1.0, "learning_rate": 1e-05, "loss": 1.0, "step": 1}],
    )
    state.save_to_json(str(out / "trainer_state.json"))
    for name, what in [
        ("training_args.bin", "torch.save(TrainingArguments)"),
        ("optimizer.pt", "optimizer state"),
        ("scheduler.pt", "learning-rate scheduler state"),
        ("rng_state.pth", "random generator states"),
        ("global_step1/mp_rank_00_model_states.pt", "DeepSpeed model states"),
        ("global_step1/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "DeepSpeed ZeRO optimizer shard"),
    ]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(PLACEHOLDER.format(what=what))
    (out / "latest").write_text("global_step1")
    (out / "zero_to_fp32.py").write_text("# " + PLACEHOLDER.format(what="DeepSpeed's zero_to_fp32.py script"))


def check_folder(out: Path, src_cfg: dict, info: dict) -> None:
    cfg = read_json(out / "config.json")
    assert "text_config" not in cfg and cfg["transformers_version"] == FORK_VERSION, cfg
    assert cfg["hidden_size"] == src_cfg["text_config"]["hidden_size"]
    assert cfg["vocab_size"] == info["vocab_size"] == 369
    assert cfg["torch_dtype"] == "bfloat16"
    assert cfg["rope_scaling"]["mrope_section"] == src_cfg["text_config"]["rope_parameters"]["mrope_section"]
    for k, v in FORK_ATTRIBUTES.items():
        assert cfg[k] == v, k
    for k, t in [("latent_token_id", "<|latent_pad|>"), ("latent_start_id", "<|latent_start|>"),
                 ("latent_end_id", "<|latent_end|>")]:
        assert cfg[k] == src_cfg[k] == info["latent_ids"][t], (k, cfg[k], src_cfg[k])
    assert (out / "chat_template.json").exists() and not (out / "chat_template.jinja").exists()
    assert read_json(out / "chat_template.json")["chat_template"] == (SRC / "chat_template.jinja").read_text()
    # The tokenizer 4.50 wrote encodes like the source one (latent tokens included).
    a = tokenizers.Tokenizer.from_file(str(SRC / "tokenizer.json"))
    b = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "<|im_start|>user\n<|latent_start|><|latent_pad|><|latent_end|> What is in this picture?<|im_end|>"
    assert a.encode(text).ids == b.encode(text).ids, (a.encode(text).ids, b.encode(text).ids)
    assert a.get_vocab_size(True) == b.get_vocab_size(True) == 369
    # transformers 4.50 reads the folder back.
    back = Qwen2_5_VLConfig.from_pretrained(out)
    assert back.vocab_size == 369 and back.latent_size == 4 and back.stage == "stage1"
    proc = AutoProcessor.from_pretrained(out)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is the square red?"}]}]
    assert "<|vision_start|><|image_pad|><|vision_end|>Is the square red?" in proc.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True)
    assert proc.image_processor.min_pixels == src_min_pixels()


def src_min_pixels() -> int:
    return read_json(SRC / "preprocessor_config.json")["min_pixels"]


def main() -> None:
    assert transformers.__version__ == "4.50.0", (
        f"needs transformers 4.50.0 (found {transformers.__version__}); see the module docstring")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as td:
        base = Path(td) / "Qwen2.5-VL-tiny-Instruct"
        base.mkdir()
        src_cfg = stage_base(base)
        info = save_like_the_fork(base, OUT)
    state = write_weights(OUT, info["vocab_size"])
    check_weights(OUT, state)
    trainer_leftovers(OUT)
    check_folder(OUT, src_cfg, info)
    for p in OUT.rglob("*"):  # serialize_file leaves 0600 files; as Hugging Face uploads have them
        p.chmod(0o755 if p.is_dir() else 0o644)
    # Rounding error of the bf16 weights, for the record.
    raw = load_file(str(SRC / "model.safetensors"))
    err = max(float(np.abs(bf16_to_f32(state[legacy_name(k)]) - raw[k][: state[legacy_name(k)].shape[0]]).max())
              for k in raw)
    files = sorted(str(p.relative_to(OUT)) for p in OUT.rglob("*") if p.is_file())
    size = sum((OUT / f).stat().st_size for f in files)
    print(json.dumps({
        "out": str(OUT.relative_to(REPO)),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "python": sys.version.split()[0],
        "tensors": len(state),
        "max_abs_bf16_rounding": err,
        "bytes": size,
        "files": files,
    }, indent=1))


if __name__ == "__main__":
    main()
