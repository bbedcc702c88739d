#!/usr/bin/env python3
"""PyTorch side of `fourd bench generate`: latent-imagery greedy decoding throughput at several batch
sizes with a lean Python loop (stock transformers fed with `inputs_embeds`; same semantics as
make_latent_fixtures.py: per-sequence state, exactly L latent steps fed with the previous final-norm
hidden state, forced <|latent_end|>).

It builds a small random Qwen2.5-VL whose tokenizer has the latent tokens (copied from
tests/fixtures/latent/model) and whose <|latent_start|> row is biased so imagery occurs, saves it to
--out, runs text prompts of different lengths (left-padded), and prints one JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import SIZES, add_device_args, build_random_model, save_model, sync  # noqa: E402
from make_latent_fixtures import cache_kwarg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LATENT = ROOT / "tests/fixtures/latent/model"

PROMPT_WORDS = "the red fox jumps over a blue circle while the camera moves to the left and the ball rolls".split()


def prompts(tok, n: int) -> list[str]:
    out = []
    for i in range(n):
        words = " ".join(PROMPT_WORDS[: 6 + 2 * i])
        msgs = [{"role": "user", "content": [{"type": "text", "text": words}]}]
        out.append(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return out


@torch.no_grad()
def latent_loop(model, enc, max_new_tokens, L, start_id, pad_id, end_id):
    embed = model.get_input_embeddings()
    mask = enc["attention_mask"].long()
    B, S = mask.shape
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    next_position = pos.masked_fill(mask == 0, -1).amax(-1) + 1
    cache = DynamicCache(config=model.config)
    ck = {cache_kwarg(model): cache}
    out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos[None].expand(3, B, S),
                **ck, use_cache=True, output_hidden_states=True)
    logits, hidden = out.logits[:, -1], out.hidden_states[-1][:, -1]
    phase, n_pads = ["text"] * B, [0] * B
    generated = []
    for k in range(max_new_tokens):
        xs, toks = [], []
        for b in range(B):
            if phase[b] == "text":
                t = int(logits[b].argmax())
                e = embed.weight[t]
                if t == start_id:
                    phase[b], n_pads[b] = "latent", 0
            elif n_pads[b] < L:
                t, e = pad_id, hidden[b]
                n_pads[b] += 1
            else:
                t, e, phase[b] = end_id, embed.weight[end_id], "text"
            xs.append(e)
            toks.append(t)
        generated.append(toks)
        if k == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
        p = (next_position + k).view(1, B, 1).expand(3, B, 1)
        out = model(inputs_embeds=torch.stack(xs)[:, None], attention_mask=mask, position_ids=p, **ck,
                    use_cache=True, output_hidden_states=True)
        logits, hidden = out.logits[:, -1], out.hidden_states[-1][:, -1]
    sync(str(mask.device))
    return torch.tensor(generated).T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--latent-size", type=int, default=4)
    ap.add_argument("--size", default="small", choices=SIZES)
    add_device_args(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    tok, model = build_random_model(out, LATENT, a.size, a.device, a.dtype)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<|latent_pad|>", "<|latent_start|>", "<|latent_end|>"]}
    with torch.no_grad():
        # Make imagery frequent, but not constant: scale <|latent_start|>'s output row.
        model.lm_head.weight[ids["<|latent_start|>"]] *= 4.5
    model.config.latent_size = a.latent_size
    model.config.latent_token_id = ids["<|latent_pad|>"]
    model.config.latent_start_id = ids["<|latent_start|>"]
    model.config.latent_end_id = ids["<|latent_end|>"]
    save_model(model, out)

    results = {}
    for bs in [int(x) for x in a.batches.split(",")]:
        tok.padding_side = "left"
        enc = tok(prompts(tok, bs), return_tensors="pt", padding=True).to(a.device)
        latent_loop(model, enc, 4, a.latent_size, ids["<|latent_start|>"], ids["<|latent_pad|>"], ids["<|latent_end|>"])
        s = time.perf_counter()
        g = latent_loop(model, enc, a.tokens, a.latent_size, ids["<|latent_start|>"], ids["<|latent_pad|>"], ids["<|latent_end|>"])
        dt = time.perf_counter() - s
        results[str(bs)] = {"seconds": dt, "tokens_per_s": bs * a.tokens / dt, "generated": g.tolist(),
                            "latent_steps": int((g == ids["<|latent_pad|>"]).sum())}
    print(json.dumps({"stack": f"transformers {transformers.__version__} / torch {torch.__version__}",
                      "threads": a.threads, "device": a.device, "dtype": a.dtype, "tokens": a.tokens, "latent_size": a.latent_size,
                      "model_dir": str(out), "batches": results}))


if __name__ == "__main__":
    main()
