"""How reliably does a model of the demo's size learn the option check, and what changes that?

Reads a `fourd demo --reply option-check` folder (its DIFT JSONL and the tiny model's tokenizer and config) and trains
transformers' Qwen2 on the replies' text (no imagery: latent_pad is a plain token, no vision),
loss on the reply only, AdamW, batch 8, 5% warmup then linear decay (or constant), clipping 1.0.
Every 100 steps it measures what decides the demo's answer: the answer letter the model writes
*greedily* after the correct reasoning (from the check's first line on, so it must copy the option
lines, give the verdicts and follow its own `yes`), on 50 held-out and 50 training records, and
teacher-forced on all held-out records: the answer letter after the whole correct reply, and the
option labels of the check lines (the tokens copied from the prompt).

    python3 demo_check_toy.py DEMO_DIR [--format check|option] [--lr 5e-3] [--steps 1000]
        [--seed 0] [--layers 2] [--hidden 96] [--heads 4] [--kv-heads 2] [--video-tokens 0]
        [--schedule linear|constant] [--drills 0] [--label-tokens] [--batch 8]

--format option: the reasoning ends "So the camera motion is Pan Left, option C." instead of the
check (the letter must be found from the label: a reverse lookup). --video-tokens N: the prompt
is the chat template with N `<|video_pad|>` tokens before the question, as the real model sees
it. --drills N: N extra records per step that hold only the conclusion, check and answer.
--label-tokens: each option label (" Tilt Up", ...) is one added token.

Measured teacher-forced (held-out letter after 1000 steps; 51 held-out records of an earlier
demo folder): 45% at lr 1e-3, 76% at 3e-3, 100% from step 900 at 5e-3 (check labels 79% right);
without the option check (`fourd demo --no-option-check` data) at chance at 3e-3; batch 4 at
5e-3: 55% after 1500 steps.

Measured (greedy held-out letter at steps 600 / 1000; README, "The demo"): seed 0 0.48 / 0.72;
seed 1 0.34 / 0.58 (0.46 at 1400 of 2000); lr 8e-3 0.32 / 0.48; 64 video tokens 0.22 / 0.36;
constant lr 5e-3 0.34 / 0.26 at 700; 3 layers 0.26 / 0.40 at 800; hidden 128 0.22 / 0.28 at
700; 8 heads (4 key/value) 0.36 / 0.58 at 800; 8 drills per step 0.44 at 600; option format
0.22 / 0.24; label tokens 0.28 / 0.24 at 1000 for seeds 0 / 1. One run each: the step at which the lookup appears varies from run to run.
"""
import argparse, json, random, re, time
import torch
from tokenizers import AddedToken, Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("demo_dir")
ap.add_argument("--format", choices=["check", "option"], default="check")
ap.add_argument("--lr", type=float, default=5e-3)
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--layers", type=int)
ap.add_argument("--hidden", type=int)
ap.add_argument("--heads", type=int)
ap.add_argument("--kv-heads", type=int)
ap.add_argument("--video-tokens", type=int, default=0)
ap.add_argument("--schedule", choices=["linear", "constant"], default="linear")
ap.add_argument("--drills", type=int, default=0)
ap.add_argument("--label-tokens", action="store_true")
ap.add_argument("--batch", type=int, default=8)
a = ap.parse_args()
torch.manual_seed(a.seed); torch.set_num_threads(1)
d = a.demo_dir
tok = Tokenizer.from_file(f"{d}/model-init/tokenizer.json")
cfg_ = json.load(open(f"{d}/model-init/config.json"))
if a.label_tokens:
    labels = set()
    for line in open(f"{d}/data/train/dift.jsonl"):
        labels.update(re.findall(r"\n[A-D]\. (.*)", json.loads(line)["text_input"]))
    tok.add_tokens([AddedToken(" " + l, normalized=False) for l in sorted(labels)])
SUFFIX = "\nFirst, think about the reasoning process with mental imagery of the relevant object or region, then provide the user with the answer. Put the reasoning in <think>...</think> and only the final answer in <answer>...</answer>, e.g. <think> reasoning process (with mental imagery as needed) </think><answer> answer here </answer>."
LATENT = "<|latent_start|>" + "<|latent_pad|>" * cfg_["latent_size"] + "<|latent_end|>"
LEAD = "Checking each option against this:\n"
enc = lambda s: tok.encode(s, add_special_tokens=False).ids


def prompt_text(question):
    if a.video_tokens == 0:
        return "user\n" + question + SUFFIX + "\nassistant\n"
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            + "<|video_pad|>" * a.video_tokens + "<|vision_end|>" + question + SUFFIX + "<|im_end|>\n<|im_start|>assistant\n")


def load(path, drills=None):
    """(ids, prompt length, where greedy decoding starts, gold letter, answer letter position,
    check label positions) per record."""
    out = []
    for line in open(path):
        r = json.loads(line)
        prompt = enc(prompt_text(r["text_input"]))
        t = r["text_output"].replace("<output_image>", LATENT)
        gold = re.search(r"<answer>\n(\w)\. ", t).group(1)
        if LEAD not in t:  # data written with --no-option-check
            cut = t.rindex("<answer>") + len("<answer>\n")
        elif a.format == "check":
            cut = t.index(LEAD) + len(LEAD)
        else:
            body = t[: t.index(LEAD)].rstrip()
            t = body[:-1] + ", option " + gold + ".\n</think>" + t[t.index("</think>") + len("</think>"):]
            cut = t.index(", option ") + len(", option")
        letter_at = len(prompt) + len(enc(t[: t.rindex("<answer>") + len("<answer>\n")]))
        labels = []  # token positions of the check lines' option labels
        if LEAD in t:
            at = t.index(LEAD) + len(LEAD)
            for check in t[at : t.index("</think>")].strip().split("\n"):
                start = t.index(check, at); colon = start + check.index(":"); at = start + len(check)
                lo, hi = len(enc(t[: start + 2])), len(enc(t[:colon]))
                labels += [len(prompt) + k for k in range(lo, hi)]
        out.append((prompt + enc(t), len(prompt), len(prompt) + len(enc(t[:cut])), gold, letter_at, labels))
        if drills is not None:
            short = "<think>\n" + t[t.rindex("So the camera motion is"):]
            drills.append((prompt + enc(short), len(prompt), 0, gold, 0, []))
    return out


drill_rows = []
train = load(f"{d}/data/train/dift.jsonl", drill_rows)
held = load(f"{d}/data/heldout/dift.jsonl")
print(len(train), "train", len(held), "held-out", vars(a), flush=True)
V = tok.get_vocab_size()
hidden = a.hidden or cfg_["hidden_size"]
m = Qwen2ForCausalLM(Qwen2Config(
    vocab_size=V, hidden_size=hidden, num_hidden_layers=a.layers or cfg_["num_hidden_layers"],
    num_attention_heads=a.heads or cfg_["num_attention_heads"], num_key_value_heads=a.kv_heads or cfg_["num_key_value_heads"],
    intermediate_size=hidden * 8 // 3 if a.hidden else cfg_["intermediate_size"], rope_theta=cfg_["rope_theta"],
    max_position_embeddings=4096, tie_word_embeddings=True))
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=0.0)
rng = random.Random(a.seed)
answer_re = re.compile(r"<answer>\s*(\w)\.")


def greedy_letter(rows, n=50):
    hits = 0
    with torch.no_grad():
        for ids, _, start, gold, _, _ in rows[:n]:
            x = list(ids[:start])
            for _ in range(60 if a.format == "check" else 2):
                x.append(int(m(torch.tensor([x])).logits[0, -1].argmax()))
            text = tok.decode(x[start:], skip_special_tokens=False)
            if a.format == "check":
                found = answer_re.search(text) or re.match(r"\s*(\w)\.", text)
                letter = found.group(1) if found else None
            else:
                letter = text.strip()[:1]
            hits += int(letter == gold)
    return round(hits / min(n, len(rows)), 3)


def teacher_forced(rows):
    """Accuracy of the answer letter and of the check lines' option labels, teacher-forced."""
    letters = labels_ok = labels_n = 0
    with torch.no_grad():
        for ids, _, _, _, at, labels in rows:
            logits = m(torch.tensor([ids[: at + 1]])).logits[0]
            letters += int(logits[at - 1].argmax().item() == ids[at])
            labels_ok += sum(int(logits[p - 1].argmax().item() == ids[p]) for p in labels)
            labels_n += len(labels)
    return round(letters / len(rows), 3), round(labels_ok / max(labels_n, 1), 3)


t0 = time.time()
for step in range(a.steps + 1):
    batch = [rng.choice(train) for _ in range(a.batch)] + [rng.choice(drill_rows) for _ in range(a.drills)]
    L = max(len(b[0]) for b in batch)
    ids = torch.zeros((len(batch), L), dtype=torch.long)
    tgt = torch.full((len(batch), L), -100)
    for i, (t, p, *_) in enumerate(batch):
        ids[i, : len(t)] = torch.tensor(t)
        tgt[i, p - 1 : len(t) - 1] = torch.tensor(t[p:])
    loss = torch.nn.functional.cross_entropy(m(ids).logits.reshape(-1, V), tgt.reshape(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    decay = max(0.0, 1 - step / a.steps) if a.schedule == "linear" else 1.0
    for g in opt.param_groups:
        g["lr"] = a.lr * min((step + 1) / (0.05 * a.steps), 1.0) * decay
    opt.step()
    if step % 100 == 0 and step > 0:
        print(step, round(loss.item(), 3), "greedy letter held-out", greedy_letter(held), "train", greedy_letter(train),
              "teacher-forced held-out letter, check labels", teacher_forced(held), round(time.time() - t0), "s", flush=True)
