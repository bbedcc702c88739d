"""Does the demo's own text (without the video) teach a model of the demo's size the option letter?

Reads a `fourd demo` folder: its DIFT JSONL (train and held-out) and the tiny model's tokenizer.
Each record becomes `user\\n<question, options, suffix>\\nassistant\\n<reply>` with every
`<output_image>` written as latent_start, latent_size latent_pad, latent_end (plain tokens here:
no imagery, no video). transformers' Qwen2 of the demo's size (2 layers, hidden 96, 4 heads,
2 key/value heads, tied embeddings), AdamW, loss on the reply only. Prints the teacher-forced
accuracy of the answer letter and of the option check's tokens (when the data has the check) on
held-out records every 100 steps.

    python3 demo_text_toy.py DEMO_DIR LR STEPS [BATCH]

Measured on the demo's data (1255 training, 51 held-out records; README, "The demo"), batch 8,
warmup + linear decay over 1000 steps: with the option check, held-out letter 45% at lr 1e-3,
76% at 3e-3, 100% from step 900 at 5e-3 (the option labels of the check lines 79% right,
teacher-forced: the copying is not fully learned); without the check, at chance at 3e-3.
Batch 4 at 5e-3: 55% after 1500 steps.
"""
import json, random, sys, time, torch
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM
torch.manual_seed(0); torch.set_num_threads(1)
d = sys.argv[1]; lr = float(sys.argv[2]); steps = int(sys.argv[3]); B = int(sys.argv[4]) if len(sys.argv) > 4 else 8
tok = Tokenizer.from_file(f"{d}/model-init/tokenizer.json")
cfg_ = json.load(open(f"{d}/model-init/config.json"))
SUFFIX = "\nFirst, think about the reasoning process with mental imagery of the relevant object or region, then provide the user with the answer. Put the reasoning in <think>...</think> and only the final answer in <answer>...</answer>, e.g. <think> reasoning process (with mental imagery as needed) </think><answer> answer here </answer>."
latent = "<|latent_start|>" + "<|latent_pad|>" * cfg_["latent_size"] + "<|latent_end|>"
def load(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        prompt = tok.encode("user\n" + r["text_input"] + SUFFIX + "\nassistant\n", add_special_tokens=False).ids
        reply_text = r["text_output"].replace("<output_image>", latent)
        reply = tok.encode(reply_text, add_special_tokens=False).ids
        head = tok.encode(reply_text[: reply_text.rindex("<answer>") + len("<answer>\n")], add_special_tokens=False).ids
        lead = "Checking each option against this:\n"
        # Positions of the option labels inside the check lines (the tokens copied from the prompt).
        check = []
        if lead in reply_text:
            at = reply_text.index(lead) + len(lead)
            for line in reply_text[at : reply_text.index("</think>")].strip().split("\n"):
                a = reply_text.index(line, at); b = a + line.index(":"); at = a + len(line)
                lo = len(tok.encode(reply_text[: a + 2], add_special_tokens=False).ids)
                hi = len(tok.encode(reply_text[:b], add_special_tokens=False).ids)
                check += [len(prompt) + k for k in range(lo, hi)]
        out.append((prompt + reply, len(prompt), len(prompt) + len(head), check))
    return out
train = load(f"{d}/data/train/dift.jsonl"); held = load(f"{d}/data/heldout/dift.jsonl")
print(len(train), "train", len(held), "held-out; mean length", sum(len(t[0]) for t in train) / len(train), flush=True)
V = tok.get_vocab_size()
cfg = Qwen2Config(vocab_size=V, hidden_size=cfg_["hidden_size"], num_hidden_layers=cfg_["num_hidden_layers"], num_attention_heads=cfg_["num_attention_heads"],
                  num_key_value_heads=cfg_["num_key_value_heads"], intermediate_size=cfg_["intermediate_size"], rope_theta=cfg_["rope_theta"],
                  max_position_embeddings=4096, tie_word_embeddings=True)
m = Qwen2ForCausalLM(cfg)
opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0)
rng = random.Random(0); t0 = time.time()
def letter_acc(rows):
    """Teacher-forced accuracy of the answer letter, and of the option check's tokens."""
    c = 0; cc = 0; nc = 0
    with torch.no_grad():
        for ids, _, a, check in rows:
            lg = m(torch.tensor([ids[: a + 1]])).logits[0]
            c += int(lg[a - 1].argmax().item() == ids[a])
            if check:
                for p in check:
                    cc += int(lg[p - 1].argmax().item() == ids[p]); nc += 1
    return round(c / len(rows), 3), round(cc / max(nc, 1), 3)
for step in range(steps + 1):
    batch = [rng.choice(train) for _ in range(B)]
    L = max(len(b[0]) for b in batch)
    ids = torch.zeros((B, L), dtype=torch.long); tgt = torch.full((B, L), -100)
    for i, (t, p, _, _) in enumerate(batch):
        ids[i, : len(t)] = torch.tensor(t); tgt[i, p - 1 : len(t) - 1] = torch.tensor(t[p:])
    lg = m(ids).logits
    loss = torch.nn.functional.cross_entropy(lg.reshape(-1, V), tgt.reshape(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    for g in opt.param_groups: g["lr"] = lr * min((step + 1) / (0.05 * steps), 1.0) * max(0.0, 1 - step / steps)
    opt.step()
    if step % 100 == 0:
        print(step, round(loss.item(), 3), "held-out letter, check labels", letter_acc(held), "train", letter_acc(train[:56]), round(time.time() - t0), "s", flush=True)
