#!/usr/bin/env python3
"""Reference fixtures for the 4DThinker latent-imagery generation loop (tiny random Qwen2.5-VL).

Run from the repository root (after, or independently of, make_qwen25vl_fixtures.py):

    python3 tools/reference/make_latent_fixtures.py [--tf450 /tmp/tf450]

It deletes and rewrites everything under tests/fixtures/latent/. Deterministic (fixed seeds,
CPU, one thread); takes about 6 s. Same requirements as make_qwen25vl_fixtures.py (whose
tokenizer, config, weight-init, media and 4.50 position-rule helpers it imports); transformers
4.50.0 is only used for its get_rope_index (read with `ast`, never imported).

Semantics (SEMANTICS below; see tools/reference/README.md, "Latent fixtures")
------------------------------------------------------------------------------
Per sequence (the rows of a batch are independent), greedy:
* text phase: token = argmax of the step's raw logits; logprob = log_softmax(raw logits)[token];
  next input = the token's normal embedding. `<|latent_start|>` (chosen like any token) switches
  the row to the latent phase.
* latent phase, L = latent_size: the step that processed `<|latent_start|>` and the next L-1 steps
  each record `<|latent_pad|>` (logits ignored, logprob NaN); the next input embedding is the
  final-norm hidden state of the position just processed (start, pad1, ..., pad L-1). The step
  that processed the L-th pad records a forced `<|latent_end|>` (logits ignored, logprob NaN),
  whose next input is its normal embedding; the row is back in the text phase.
  One segment: start, L x pad, end; its latent hidden states are the L vectors fed to the pads.
* positions: decode position of generated id k (as an input) = next_position + k on all three
  M-RoPE axes, next_position = max prompt position + 1 (4.50 get_rope_index rule for the prompt).
* no stopping: exactly max_new_tokens ids (pads and the forced end included).

The loop below is an explicit Python loop over stock transformers 5.x
Qwen2_5_VLForConditionalGeneration: prefill through the normal multimodal path (input_ids, pixel
values, mm_token_type_ids, explicit 4.50 position_ids), then one `inputs_embeds` step at a time
with a DynamicCache and explicit [3,B,1] position_ids. It is checked against
(1) stock `generate` (greedy ids and raw logits of each row up to and including its first
    `<|latent_start|>`; the whole run with the latent phase switched off), and
(2) one uncached forward over [prompt embeddings ; every fed embedding] with the same positions
    (hidden states and log-probs of all steps).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_qwen25vl_fixtures as Q  # noqa: E402

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: E402
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "latent"

SEMANTICS = "latent-v1: per-sequence greedy; exactly latent_size pads fed with the previous final-norm " \
            "hidden state; forced latent_end; no early end; positions next_position + k on all axes"
LATENT_TOKENS = ["<|latent_pad|>", "<|latent_start|>", "<|latent_end|>"]  # 4DThinker order
CONFIG_LATENT_SIZE = 4
MODEL_SEED = 2024
# The `<|latent_start|>` row of lm_head is replaced by LATENT_ROW_SCALE * N(0, 1) drawn with
# LATENT_ROW_SEED (chosen by --search so that every case below has the properties it asserts).
LATENT_ROW_SEED = 60
LATENT_ROW_SCALE = 0.4
MIN_PIXELS = Q.MIN_PIXELS
MAX_PIXELS = Q.MAX_PIXELS
MIN_MARGIN = 1e-3



def cache_kwarg(model) -> str:
    """The forward argument that takes the KV cache: `cache` in transformers 5.24, `past_key_values`
    in earlier 5.x (5.17 ignores `cache=` silently, and a loop then decodes without context)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"

def _img(p):
    return {"type": "image", "path": p}


def _txt(t):
    return {"type": "text", "text": t}


def _user(*content):
    return [{"role": "user", "content": list(content)}]


# name -> (conversations (one per batch row), latent_size, max_new_tokens)
CASES = {
    "image_l4": ([_user(_img("media/img_c.png"), _txt("Is the square red?"))], 4, 40),
    "text_l1": ([_user(_txt("How many objects are there in the image?"))], 1, 30),
    "text_l8": ([_user(_txt("What is in this picture? Describe it."))], 8, 40),
    "batch_two_l4": (
        [
            _user(_img("media/img_c.png"), _txt("What color is the circle?")),
            _user(_txt("Tell me a short story about a red fox and a blue circle on a green background.")),
        ],
        4,
        30,
    ),
    "first_step": ([_user(_img("media/img_c.png"), _txt("What is in this picture? Describe it."))], 4, 12),
}
# Prompt pools of --search (CASES above holds what it picked). Texts use the BPE corpus words.
TEXTS = [
    "What is in this picture? Describe it.",
    "Describe the image in detail.",
    "How many objects are there in the image?",
    "What color is the square?",
    "What color is the circle?",
    "Compare the two images.",
    "Tell me a short story about a red fox and a blue circle.",
    "Please describe the scene: a bright gradient and a moving ball.",
    "Write one sentence about the quick brown fox.",
    "What happens in the video?",
    "Hello! How are you today?",
    "What color is the sky?",
    "Is the square red?",
    "The lazy dog sleeps in the sun.",
    "Tell me a short story.",
    "The ball moves from the left to the right. Why?",
]
LONG_TEXTS = [
    "Compare the two images. Is the object from the image in the video? Yes, the blue circle.",
    "Tell me a short story about a red fox and a blue circle on a green background.",
    "The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun. What happens next?",
    "Please describe the scene: a bright gradient, a moving ball, some noise, and smooth shapes.",
]
SYSTEMS = [None, "You are a helpful assistant. Imagine the picture first.", "Think with images."]


def _conv(text, image=False, system=None):
    items = ([_img("media/img_c.png")] if image else []) + [_txt(text)]
    conv = _user(*items)
    return ([{"role": "system", "content": [_txt(system)]}] if system else []) + conv


SEARCH_POOLS = {
    "image_l4": [[_conv(t, image=True)] for t in TEXTS],
    "text_l1": [[_conv(t)] for t in TEXTS + LONG_TEXTS],
    "text_l8": [[_conv(t)] for t in TEXTS + LONG_TEXTS],
    "batch_two_l4": [[_conv(t, image=True), _conv(u)] for u in LONG_TEXTS for t in TEXTS[:8]],
    "first_step": [[_conv(t, image=im, system=sy)] for sy in SYSTEMS for im in (False, True) for t in TEXTS],
}


# --------------------------------------------------------------------------------------------
# Tokenizer, processor, model
# --------------------------------------------------------------------------------------------
def build_tokenizer(stage: Path):
    """The qwen25vl tokenizer (same BPE + Qwen2.5 specials) with the three 4DThinker tokens added
    after them as special tokens (what the 4DThinker scripts do with add_tokens(special_tokens=True))."""
    Q.build_tokenizer_stage(stage)
    tok = AutoTokenizer.from_pretrained(stage)
    n0 = len(tok)
    added = tok.add_tokens(LATENT_TOKENS, special_tokens=True)
    assert added == 3
    ids = [tok.convert_tokens_to_ids(t) for t in LATENT_TOKENS]
    assert ids == [n0, n0 + 1, n0 + 2], ids
    return tok


def build_processor(tok):
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=tok,
        chat_template=Q.QWEN25VL_CHAT_TEMPLATE,
    )


def latent_ids(tok) -> dict:
    return {
        "latent_token_id": tok.convert_tokens_to_ids("<|latent_pad|>"),
        "latent_start_id": tok.convert_tokens_to_ids("<|latent_start|>"),
        "latent_end_id": tok.convert_tokens_to_ids("<|latent_end|>"),
    }


@torch.no_grad()
def build_model(tok, row_seed: int, row_scale: float):
    config = Q.build_config(tok)  # vocab = len(tok) rounded up to a multiple of 16
    assert config.text_config.vocab_size % 16 == 0 and config.text_config.vocab_size >= len(tok)
    for k, v in latent_ids(tok).items():
        setattr(config, k, v)
    config.latent_size = CONFIG_LATENT_SIZE
    config.compress_strategy = "average"
    torch.manual_seed(MODEL_SEED)
    model = Qwen2_5_VLForConditionalGeneration(config)
    Q.reinit_weights(model, MODEL_SEED)
    g = torch.Generator().manual_seed(row_seed)
    start = config.latent_start_id
    model.lm_head.weight[start] = row_scale * torch.randn(config.text_config.hidden_size, generator=g)
    return model.eval()


def generation_config(tok) -> GenerationConfig:
    eot, im_end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    return GenerationConfig(bos_token_id=eot, pad_token_id=eot, eos_token_id=[im_end, eot], do_sample=False)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def write_media(out: Path) -> dict:
    """media/img_c.png: 84x56 (W x H, multiple of 28: no resize), the qwen25vl img_c pattern."""
    (out / "media").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(MODEL_SEED)
    Image.fromarray(Q._smooth_image(84, 56, rng, 0.6, 2.0)).save(out / "media" / "img_c.png", optimize=True)
    return {"media/img_c.png": {"width": 84, "height": 56}}


def run_processor(processor, conversations):
    prompts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    images = [
        Image.open(OUT / it["path"]).convert("RGB")
        for conv in conversations
        for msg in conv
        for it in msg["content"]
        if it["type"] == "image"
    ]
    kw = dict(text=prompts, return_tensors="pt", padding=True, padding_side="left")
    if images:
        kw["images"] = images
    return prompts, processor(**kw)


def prompt_positions(model, tf450: Q.TF450, inp) -> torch.Tensor:
    """[3,B,S] prompt positions under the 4.50 rule; asserts that stock 5.x agrees (no video here)."""
    ids, mask = inp["input_ids"].long(), inp["attention_mask"].long()
    igrid = inp.get("image_grid_thw")
    igrid = igrid.long() if igrid is not None else None
    pos450, _ = tf450.rope_index(model.config, ids, igrid, None, None, mask)
    if igrid is not None:
        pos5, _ = model.model.get_rope_index(ids, mm_token_type_ids=inp["mm_token_type_ids"], image_grid_thw=igrid,
                                             attention_mask=mask)
    else:  # 5.x text-only: plain 1-D positions
        pos5 = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[None].expand(3, -1, -1)
    valid = mask.bool()[None].expand(3, -1, -1)
    assert torch.equal(pos450[valid], pos5[valid]), "4.50 and 5.x prompt positions differ"
    return pos450.long()


def prefill_feed(inp) -> dict:
    return {k: inp[k] for k in ["input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                "image_grid_thw"] if k in inp}


# --------------------------------------------------------------------------------------------
# The reference loop
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def latent_generate(model, inp, pos_prompt, max_new_tokens: int, latent_size: int, ids: dict,
                    latent: bool = True, allow_cut: bool = False) -> dict:
    """Greedy generation with latent imagery, per-sequence state. latent=False: the latent phase
    is switched off (<|latent_start|> is an ordinary token) - used to check against generate."""
    start_id, pad_id, end_id = ids["latent_start_id"], ids["latent_token_id"], ids["latent_end_id"]
    L = latent_size
    embed = model.get_input_embeddings()
    mask = inp["attention_mask"].long()
    B, S = mask.shape
    next_position = pos_prompt.masked_fill(mask[None] == 0, -1).amax(dim=(0, 2))  # [B]
    next_position = next_position + 1

    cache = DynamicCache(config=model.config)
    ck = {cache_kwarg(model): cache}
    out = model(**prefill_feed(inp), position_ids=pos_prompt, **ck, use_cache=True,
                output_hidden_states=True)
    logits = out.logits[:, -1].float()
    hidden = out.hidden_states[-1][:, -1]
    assert torch.allclose(model.lm_head(hidden), out.logits[:, -1], atol=1e-5)

    phase = ["text"] * B  # "text" | "latent"
    n_pads = [0] * B  # pads recorded in the current segment
    generated = torch.zeros(B, max_new_tokens, dtype=torch.long)
    logprobs = torch.full((B, max_new_tokens), float("nan"))
    fed = torch.zeros(B, max(max_new_tokens - 1, 0), hidden.shape[-1])  # input embedding of generated[:, k]
    step_hidden = torch.zeros(B, max_new_tokens, hidden.shape[-1])  # hidden that produced generated[:, k]
    step_logits = torch.zeros(B, max_new_tokens, logits.shape[-1])
    dec_pos = torch.zeros(3, B, max(max_new_tokens - 1, 0), dtype=torch.long)
    margins = []
    for k in range(max_new_tokens):
        step_hidden[:, k] = hidden
        step_logits[:, k] = logits
        lsm = torch.log_softmax(logits, -1)
        nxt = []
        for b in range(B):
            if phase[b] == "text":
                t = int(logits[b].argmax())
                logprobs[b, k] = lsm[b, t]
                top2 = logits[b].topk(2).values
                margins.append(float(top2[0] - top2[1]))
                e = embed.weight[t]
                if latent and t == start_id:
                    phase[b], n_pads[b] = "latent", 0
            elif n_pads[b] < L:
                t = pad_id
                n_pads[b] += 1
                e = hidden[b]  # final-norm hidden state of the position just processed
            else:
                t = end_id
                phase[b] = "text"
                e = embed.weight[t]
            generated[b, k] = t
            nxt.append(e)
        if k == max_new_tokens - 1:
            break
        x = torch.stack(nxt)[:, None]  # [B,1,H]
        fed[:, k] = x[:, 0]
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], 1)
        pos = (next_position + k).view(1, B, 1).expand(3, B, 1)
        dec_pos[:, :, k] = pos[:, :, 0]
        out = model(inputs_embeds=x, attention_mask=mask, position_ids=pos, **ck, use_cache=True,
                    output_hidden_states=True)
        logits = out.logits[:, -1].float()
        hidden = out.hidden_states[-1][:, -1]
    # a row still inside a segment at the end would leave it cut: not wanted in the fixtures
    segments = []
    for b in range(B):
        row = generated[b].tolist()
        segs = []
        for k, t in enumerate(row):
            if latent and t == start_id:
                if allow_cut:
                    continue
                assert k + L + 1 < len(row), f"row {b}: segment at {k} cut by max_new_tokens"
                assert row[k + 1:k + L + 1] == [pad_id] * L and row[k + L + 1] == end_id
                segs.append(k + 1)
        segments.append(segs)
    return {
        "generated": generated, "logprobs": logprobs, "fed": fed,
        "step_hidden": step_hidden, "step_logits": step_logits, "decode_position_ids": dec_pos,
        "next_position": next_position, "segments": segments,
        "min_margin": min(margins) if margins else float("inf"),
    }


def latent_hidden(res: dict, b: int, L: int) -> torch.Tensor:
    """[n_segments, L, H]: the vectors fed as input embeddings to the pads of row b, in order.
    Pad i of a segment whose first pad is generated[s] is generated[s+i]; its input embedding is
    fed[s+i] = step_hidden[s+i], the final-norm hidden state at the position of generated[s+i-1]
    (latent_start for i = 0), i.e. the hidden state whose logits were ignored when the pad was recorded."""
    segs = res["segments"][b]
    H = res["step_hidden"].shape[-1]
    if not segs:
        return torch.zeros(0, L, H)
    out = torch.stack([res["fed"][b, s:s + L] for s in segs])
    assert torch.equal(out, torch.stack([res["step_hidden"][b, s:s + L] for s in segs]))
    return out


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def check_against_generate(model, inp, pos_prompt, res, res_off, ids, T) -> dict:
    """Stock generate (greedy, eos off, 5.x positions, which agree with 4.50 here) must give
    (a) each row's ids and raw logits up to and including its first <|latent_start|> and
    (b) the whole latent-off run."""
    model.model.rope_deltas = None
    gen = model.generate(**prefill_feed(inp), max_new_tokens=T, do_sample=False, output_logits=True,
                         return_dict_in_generate=True)
    model.model.rope_deltas = None
    S = inp["input_ids"].shape[1]
    g = gen.sequences[:, S:]
    glog = torch.stack([x.float() for x in gen.logits], 1)
    assert torch.equal(g, res_off["generated"]), "latent-off loop != generate"
    off_diff = float((glog - res_off["step_logits"]).abs().max())
    assert off_diff < 1e-4, off_diff
    prefix = []
    max_diff = 0.0
    for b in range(g.shape[0]):
        row = res["generated"][b].tolist()
        n = row.index(ids["latent_start_id"]) + 1 if ids["latent_start_id"] in row else T
        assert torch.equal(g[b, :n], res["generated"][b, :n]), f"row {b}: loop != generate before the first segment"
        max_diff = max(max_diff, float((glog[b, :n] - res["step_logits"][b, :n]).abs().max()))
        prefix.append(n)
    assert max_diff < 1e-4, max_diff
    return {"generate_prefix_len_per_row": prefix, "generate_prefix_max_abs_logit_diff": max_diff,
            "latent_off_equals_generate": True, "latent_off_max_abs_logit_diff": off_diff}


@torch.no_grad()
def check_full_recompute(model, inp, pos_prompt, res) -> dict:
    """One uncached forward over [prompt embeddings ; fed embeddings] with the same positions
    must reproduce every step's hidden state and log-prob."""
    ids = inp["input_ids"]
    emb = model.get_input_embeddings()(ids)
    if "pixel_values" in inp:
        feats = torch.cat(model.model.get_image_features(inp["pixel_values"], inp["image_grid_thw"]).pooler_output, 0)
        m, _ = model.model.get_placeholder_mask(ids, inputs_embeds=emb, image_features=feats)
        emb = emb.masked_scatter(m, feats)
    x = torch.cat([emb, res["fed"]], 1)
    B, T1 = res["fed"].shape[:2]
    mask = torch.cat([inp["attention_mask"].long(), torch.ones(B, T1, dtype=torch.long)], 1)
    pos = torch.cat([pos_prompt, res["decode_position_ids"]], 2)
    out = model(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=False, output_hidden_states=True)
    S = ids.shape[1]
    h = out.hidden_states[-1][:, S - 1:]
    dh = float((h - res["step_hidden"]).abs().max())
    lp = torch.log_softmax(out.logits[:, S - 1:].float(), -1).gather(-1, res["generated"][..., None])[..., 0]
    text = ~torch.isnan(res["logprobs"])
    dl = float((lp[text] - res["logprobs"][text]).abs().max())
    assert dh < 1e-4 and dl < 1e-4, (dh, dl)
    return {"hidden_max_abs_diff": dh, "logprob_max_abs_diff": dl}


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def run_case(model, processor, tf450, name, conversations, L, T, ids, check=True):
    prompts, inp = run_processor(processor, conversations)
    pos = prompt_positions(model, tf450, inp)
    res = latent_generate(model, inp, pos, T, L, ids)
    info = {}
    if check:
        res_off = latent_generate(model, inp, pos, T, L, ids, latent=False)
        info["check_generate"] = check_against_generate(model, inp, pos, res, res_off, ids, T)
        info["check_full_recompute"] = check_full_recompute(model, inp, pos, res)
    return prompts, inp, pos, res, info


def case_properties(name, res, ids, L) -> list[str]:
    """Problems of a case result (empty list: fine)."""
    probs = []
    segs = res["segments"]
    gen = res["generated"]
    if res["min_margin"] < MIN_MARGIN:
        probs.append(f"margin {res['min_margin']:.2e}")
    # the pad / end tokens must not come out of the text phase (keeps the fixtures unambiguous)
    for b in range(gen.shape[0]):
        row = gen[b].tolist()
        text_pos = [k for k in range(len(row)) if not math.isnan(float(res["logprobs"][b, k]))]
        if any(row[k] in (ids["latent_token_id"], ids["latent_end_id"]) for k in text_pos):
            probs.append(f"row {b}: pad/end chosen in the text phase")
        if not text_pos or sum(1 for k in text_pos if row[k] != ids["latent_start_id"]) < 3:
            probs.append(f"row {b}: too little text")
    start = ids["latent_start_id"]
    if name == "image_l4":
        if gen[0, 0] == start:
            probs.append("image_l4: starts with a segment")
        if len(segs[0]) < 2:
            probs.append("image_l4: < 2 segments")
        elif segs[0][1] - 1 - (segs[0][0] + L + 1) < 2:  # text ids between end of seg 0 and start of seg 1
            probs.append("image_l4: < 2 text tokens between segments")
    if name == "text_l1" and len(segs[0]) < 2:
        probs.append("text_l1: < 2 segments")
    if name == "text_l8" and len(segs[0]) < 1:
        probs.append("text_l8: no segment")
    if name == "batch_two_l4":
        if min(len(s_) for s_ in segs) < 1:
            probs.append("batch_two_l4: a row without segment")
        elif abs(segs[0][0] - segs[1][0]) < 2:
            probs.append("batch_two_l4: rows enter (almost) at the same step")
        if gen[0, 0] == start and gen[1, 0] == start:
            probs.append("batch_two_l4: both rows start with a segment")
    if name == "first_step" and gen[0, 0] != ids["latent_start_id"]:
        probs.append("first_step: first token is not latent_start")
    return probs


def evaluate(model, processor, tf450, ids, cases, verbose=False) -> list[str]:
    problems = []
    for name, (convs, L, T) in cases.items():
        try:
            _, _, _, res, _ = run_case(model, processor, tf450, name, convs, L, T, ids, check=False)
        except AssertionError as e:
            problems.append(f"{name}: {e}")
            continue
        p = case_properties(name, res, ids, L)
        if verbose:
            print(name, res["segments"], f"margin {res['min_margin']:.3g}", p)
        problems += p
    return problems


def search(tok, processor, tf450):
    """Find an lm_head row (seed, scale) and, per case, the first prompt of its pool for which the
    case has the properties case_properties() asks for. Prints what to put into the constants."""
    ids = latent_ids(tok)
    for scale in [0.4, 0.5, 0.6, 0.8, 0.3]:
        for seed in range(200):
            model = build_model(tok, seed, scale)
            chosen = {}
            for name in ["first_step", "image_l4", "batch_two_l4", "text_l1", "text_l8"]:
                _, L, T = CASES[name]
                for convs in SEARCH_POOLS[name]:
                    if not evaluate(model, processor, tf450, ids, {name: (convs, L, T)}):
                        chosen[name] = convs
                        break
                else:
                    break
            print(f"scale {scale} seed {seed}: {len(chosen)} cases ok ({sorted(chosen)})", flush=True)
            if len(chosen) == len(CASES):
                print("LATENT_ROW_SEED =", seed, "LATENT_ROW_SCALE =", scale)
                print(json.dumps(chosen, indent=1))
                return


@torch.no_grad()
def verify_written_case(name: str) -> dict:
    """Re-derive a case from the written files only (model/, pixels.safetensors, the case files),
    the way a consumer would: one uncached forward over [prompt ; generated[:, :-1]] where each pad's
    input embedding is taken from latent_hidden and every other id uses its token embedding. Text
    steps must give the recorded ids (argmax) and log-probs, the pads' inputs must be the hidden
    states of the preceding positions, and the segment layout must be start, L pads, end."""
    meta = json.loads((OUT / "cases" / f"{name}.json").read_text())
    t = load_file(str(OUT / "cases" / f"{name}.safetensors"))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(OUT / "model", dtype=torch.float32).eval()
    cfg = model.config
    store = load_file(str(OUT / "pixels.safetensors"))
    L, ids, gen, lp = meta["latent_size"], t["input_ids"], t["generated"], t["logprobs"]
    B, S = ids.shape
    T = gen.shape[1]
    emb = model.get_input_embeddings()(ids)
    if meta["pixel_sources"]:
        pv = torch.cat([store[k] for k in meta["pixel_sources"]["pixel_values"]], 0)
        feats = torch.cat(model.model.get_image_features(pv, t["image_grid_thw"]).pooler_output, 0)
        m, _ = model.model.get_placeholder_mask(ids, inputs_embeds=emb, image_features=feats)
        emb = emb.masked_scatter(m, feats)
    ge = model.get_input_embeddings()(gen[:, :-1]).clone()
    hid = {}
    for b in range(B):
        suffix = "" if B == 1 else f"_row{b}"
        starts, lh = t["segment_starts" + suffix].tolist(), t["latent_hidden" + suffix]
        assert lh.shape == (len(starts), L, cfg.text_config.hidden_size)
        row = gen[b].tolist()
        expect_nan = set()
        for j, s0 in enumerate(starts):
            assert row[s0 - 1] == cfg.latent_start_id and row[s0:s0 + L] == [cfg.latent_token_id] * L
            assert row[s0 + L] == cfg.latent_end_id
            ge[b, s0:s0 + L] = lh[j]
            hid[(b, j)] = (s0, lh[j])
            expect_nan |= set(range(s0, s0 + L + 1))
        assert row.count(cfg.latent_start_id) == len(starts)  # no start outside a listed segment
        assert {k for k in range(T) if math.isnan(float(lp[b, k]))} == expect_nan
    mask = torch.cat([t["attention_mask"], torch.ones(B, T - 1, dtype=torch.long)], 1)
    pos = t["position_ids"]
    nxt = pos.masked_fill(t["attention_mask"][None] == 0, -1).amax(dim=(0, 2)) + 1
    assert nxt.tolist() == meta["next_position"]
    dec = (nxt[:, None] + torch.arange(T - 1)[None]).expand(3, B, T - 1)
    assert torch.equal(dec, t["decode_position_ids"])
    out = model(inputs_embeds=torch.cat([emb, ge], 1), attention_mask=mask, position_ids=torch.cat([pos, dec], 2),
                use_cache=False, output_hidden_states=True)
    logits, h = out.logits[:, S - 1:].float(), out.hidden_states[-1][:, S - 1:]
    text = ~torch.isnan(lp)
    assert torch.equal(logits.argmax(-1)[text], gen[text]), f"{name}: argmax != generated"
    lsm = torch.log_softmax(logits, -1).gather(-1, gen[..., None])[..., 0]
    dl = float((lsm[text] - lp[text]).abs().max())
    dh = max([float((h[b, s0:s0 + L] - v).abs().max()) for (b, _), (s0, v) in hid.items()] or [0.0])
    assert dl < 1e-4 and dh < 1e-4, (name, dl, dh)
    return {"logprob_max_abs_diff": dl, "latent_hidden_max_abs_diff": dh}


# --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf450", default=os.environ.get("QWEN25VL_TF450", "/tmp/tf450"),
                    help="directory holding transformers 4.50.0 (its get_rope_index is used)")
    ap.add_argument("--search", action="store_true",
                    help="search LATENT_ROW_SEED / LATENT_ROW_SCALE instead of writing fixtures")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tf450 = Q.TF450(Path(args.tf450))

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    media_info = write_media(OUT)

    with tempfile.TemporaryDirectory() as td:
        tok = build_tokenizer(Path(td) / "tokenizer")
    processor = build_processor(tok)
    ids = latent_ids(tok)
    if args.search:
        search(tok, processor, tf450)
        return

    model = build_model(tok, LATENT_ROW_SEED, LATENT_ROW_SCALE)
    cases = CASES
    problems = evaluate(model, processor, tf450, ids, cases, verbose=True)
    assert not problems, problems

    # --- checkpoint ------------------------------------------------------------------------
    mdir = OUT / "model"
    model.generation_config = generation_config(tok)
    model.save_pretrained(mdir)
    processor.save_pretrained(mdir)  # tokenizer.json, tokenizer_config.json, chat_template.jinja, processor_config.json
    processor.image_processor.save_pretrained(mdir)
    pp = json.loads((mdir / "preprocessor_config.json").read_text())
    pp.setdefault("min_pixels", MIN_PIXELS)
    pp.setdefault("max_pixels", MAX_PIXELS)
    (mdir / "preprocessor_config.json").write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")
    cfg = json.loads((mdir / "config.json").read_text())
    for k, v in {**ids, "latent_size": CONFIG_LATENT_SIZE, "compress_strategy": "average"}.items():
        assert cfg[k] == v, (k, cfg.get(k))
    # the saved folder reloads to the same model and processor
    model2 = Qwen2_5_VLForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32).eval()
    proc2 = AutoProcessor.from_pretrained(mdir)
    assert [proc2.tokenizer.convert_tokens_to_ids(t) for t in LATENT_TOKENS] == [
        ids["latent_token_id"], ids["latent_start_id"], ids["latent_end_id"]]
    for (k1, v1), (k2, v2) in zip(sorted(model.state_dict().items()), sorted(model2.state_dict().items())):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert model2.config.latent_size == CONFIG_LATENT_SIZE

    # --- cases -----------------------------------------------------------------------------
    (OUT / "cases").mkdir()
    model2.generation_config = GenerationConfig(do_sample=False, bos_token_id=tok.pad_token_id,
                                               pad_token_id=tok.pad_token_id, eos_token_id=None)
    summary = {}
    store = {}
    for name, (convs, L, T) in cases.items():
        # fixtures come from the saved folder (model2, proc2), as a reader of model/ would load it
        prompts, inp, pos, res, checks = run_case(model2, proc2, tf450, name, convs, L, T, ids)
        # the in-memory processor and model agree (decode steps to ~1e-6: the reloaded weights are
        # laid out differently in memory, which changes the CPU matmul rounding, not the ids)
        prompts1, inp1 = run_processor(processor, convs)
        assert prompts1 == prompts and set(inp1.keys()) == set(inp.keys())
        assert all(torch.equal(torch.as_tensor(inp1[k]), torch.as_tensor(inp[k])) for k in inp)
        res1 = latent_generate(model, inp, pos, T, L, ids)
        assert torch.equal(res1["generated"], res["generated"])
        checks["in_memory_model_fed_max_abs_diff"] = float((res1["fed"] - res["fed"]).abs().max())
        assert checks["in_memory_model_fed_max_abs_diff"] < 1e-5
        # pixel values: once per image in ../pixels.safetensors (like the qwen25vl fixtures)
        srcs = [it["path"] for conv in convs for msg in conv for it in msg["content"] if it["type"] == "image"]
        for src in srcs:
            if src not in store:
                store[src] = run_processor(processor, [_user(_img(src))])[1]["pixel_values"].float().contiguous()
        if srcs:
            assert torch.equal(inp["pixel_values"].float(), torch.cat([store[s_] for s_ in srcs], 0))
        B = res["generated"].shape[0]
        tensors = {
            "input_ids": inp["input_ids"].long(),
            "attention_mask": inp["attention_mask"].long(),
            "mm_token_type_ids": inp["mm_token_type_ids"].long(),
        }
        if "pixel_values" in inp:
            tensors["image_grid_thw"] = inp["image_grid_thw"].long()
        tensors["position_ids"] = pos
        tensors["generated"] = res["generated"]
        tensors["logprobs"] = res["logprobs"].float()
        tensors["decode_position_ids"] = res["decode_position_ids"]
        if B == 1:
            tensors["latent_hidden"] = latent_hidden(res, 0, L).float()
            tensors["segment_starts"] = torch.tensor(res["segments"][0], dtype=torch.long)
        else:
            for b in range(B):
                tensors[f"latent_hidden_row{b}"] = latent_hidden(res, b, L).float()
                tensors[f"segment_starts_row{b}"] = torch.tensor(res["segments"][b], dtype=torch.long)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, str(OUT / "cases" / f"{name}.safetensors"))
        meta = {
            "name": name,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "tokenizers_version": tokenizers.__version__,
            "semantics": SEMANTICS,
            "model": "model",
            "load_dtype": "float32",
            "rope_index": "v4.50",
            "messages": convs,
            "prompts": prompts,
            "padding_side": "left",
            "latent_size": L,
            "config_latent_size": CONFIG_LATENT_SIZE,
            "max_new_tokens": T,
            "do_sample": False,
            "eos": "disabled (exactly max_new_tokens generated ids, pads and forced ends included)",
            "latent_ids": ids,
            "pixel_sources": {"pixel_values": srcs} if srcs else {},
            "next_position": res["next_position"].tolist(),
            "segment_starts": res["segments"],
            "min_top1_top2_logit_margin": res["min_margin"],
            "decoded": [tok.decode(g, skip_special_tokens=False) for g in res["generated"].tolist()],
            "checks": checks,
            "tensor_names": list(tensors.keys()),
            "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                        for k, v in tensors.items()},
            "notes": {
                "generated": "[B,T] generated ids only (prompt not included)",
                "logprobs": "[B,T] log_softmax of the raw logits at the chosen id (text phase, latent_start "
                            "included); NaN at pads and forced latent_end",
                "latent_hidden": "[n_segments,L,64] per segment the L vectors fed as the pads' input embeddings: "
                                 "final-norm hidden state at the position of latent_start, pad1, ..., pad L-1",
                "segment_starts": "index in generated of each segment's first pad (latent_start is at index-1, "
                                  "latent_end at index+L)",
                "position_ids": "[3,B,S] prompt positions (4.50 rule; padded slots hold 1 and are masked)",
                "decode_position_ids": "[3,B,T-1] positions of the inputs generated[:, :-1]: next_position + k",
                "pixel_sources": "pixel_values [N,1176] float32 = concatenation (dim 0), in order, of the listed "
                                 "entries of ../pixels.safetensors (each: the processor output for that image alone)",
            },
        }
        (OUT / "cases" / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        summary[name] = {"segments": res["segments"], "min_margin": res["min_margin"]}

    manifest = {
        "generator": "tools/reference/make_latent_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "tf450_version": tf450.version,
        "semantics": SEMANTICS,
        "model_seed": MODEL_SEED,
        "latent_row": {"token": "<|latent_start|>", "seed": LATENT_ROW_SEED, "scale": LATENT_ROW_SCALE,
                       "note": "lm_head row of <|latent_start|> = scale * N(0,1) (generator seeded with seed)"},
        "tokenizer": {"len": len(tok), **{t: tok.convert_tokens_to_ids(t) for t in LATENT_TOKENS},
                      "eos_token": tok.eos_token, "pad_token": tok.pad_token},
        "vocab_size": model.config.text_config.vocab_size,
        "media": media_info,
        "pixels": {k: list(v.shape) for k, v in sorted(store.items())},
        "cases": summary,
    }
    save_file(dict(sorted(store.items())), str(OUT / "pixels.safetensors"))
    for name in cases:
        r = verify_written_case(name)
        print(f"{name}: re-derived from the written files: {r}")
        meta = json.loads((OUT / "cases" / f"{name}.json").read_text())
        meta["checks"]["from_written_files"] = r
        (OUT / "cases" / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
