"""Can a model of the demo's size learn to pick the option letter of its conclusion?

A text-only stand-in for `fourd demo`'s camera questions, trained with transformers' Qwen2 on
CPU: prompt = (optional hint "The camera motion is X.") question, options `A. label` ... ;
reply = filler tokens (the reasoning), "So the motion is X.", optionally the option check
(one line per option, "yes"/"no"), then `<answer> B . label`. Prints teacher-forced accuracy of
the answer letter and of copying the option lines on 64 fresh documents every 100 steps.

    python3 lookup_toy.py LR FILLER STEPS HIDDEN LAYERS HEADS
    env: CHECK=1 (option check), B=8 (batch), MASK=1 (no loss on the prompt),
         NOHINT=1 (no hint in the prompt), TIE=1 (tied embeddings), KV=2 (key/value heads),
         DECAY=1 (5% warmup then linear decay, as the demo)

Measured: without the check, letter at chance after 1500 steps of 8; with
CHECK=1, FILLER 200, batch 8: option lines copied by step 600 and the letter right by step 1200,
also with MASK=1 NOHINT=1 TIE=1 KV=2.
"""
import random, time, torch, sys, os
CHECK = os.environ.get("CHECK") == "1"
from transformers import Qwen2Config, Qwen2ForCausalLM
torch.manual_seed(0); random.seed(0)
torch.set_num_threads(1)
labels = [["Pan","Left"],["Pan","Right"],["Tilt","Up"],["Tilt","Down"],["Dolly","In"],["Dolly","Out"],["Stay"]]
words = ["\n", "Check", "yes", "no"] + "<bos> user assistant Which camera movement happens between 0s and 7s ? The motion is Answer with imagery . \n A B C D So <think> </think> <answer> </answer> <pad> : ; filler1 filler2 filler3 filler4".split()
for l in labels:
    for w in l:
        if w not in words: words.append(w)
vocab = {w:i for i,w in enumerate(words)}
V=len(words)
def doc(rng):
    opts = rng.sample(range(7),4); correct = rng.randrange(4); lab = labels[opts[correct]]
    t = ["user"] + ([] if os.environ.get("NOHINT")=="1" else ["The","camera","motion","is",*lab,"."]) + ["Which","camera","movement","happens","between","0s","and","7s","?","\n"]
    for k,o in enumerate(opts):
        t += ["ABCD"[k], ".", *labels[o], "\n"]
    t += ["Answer","with","imagery",".","assistant","<think>"] + ["filler%d"%rng.randint(1,4) for _ in range(int(sys.argv[2]))] + ["So","The","motion","is",*lab,"."]
    copy_pos=[]
    if CHECK:
        t += ["Check"]
        for k,o in enumerate(opts):
            t += ["ABCD"[k], "."]; copy_pos.append(len(t)); t += [*labels[o], ":", "yes" if k==correct else "no", ";"]
    t += ["</think>","<answer>"]
    ans_pos = len(t)
    t += ["ABCD"[correct], ".", *lab, "</answer>"]
    return [vocab[w] for w in t], ans_pos, copy_pos
cfg = Qwen2Config(vocab_size=V, hidden_size=int(sys.argv[4]), num_hidden_layers=int(sys.argv[5]), num_attention_heads=int(sys.argv[6]), num_key_value_heads=int(os.environ.get("KV", sys.argv[6])), intermediate_size=256, rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=os.environ.get("TIE")=="1")
m = Qwen2ForCausalLM(cfg)
opt = torch.optim.AdamW(m.parameters(), lr=float(sys.argv[1]), weight_decay=0.0)
rng = random.Random(0)
B=int(os.environ.get("B","8")); steps=int(sys.argv[3]); t0=time.time()
for step in range(steps+1):
    docs=[doc(rng) for _ in range(B)]
    L=max(len(d[0]) for d in docs)
    ids=torch.full((B,L),vocab["<pad>"]); 
    for i,(d,_,_) in enumerate(docs): ids[i,:len(d)]=torch.tensor(d)
    out=m(ids)
    logits=out.logits[:,:-1]; tgt=ids[:,1:].clone()
    for i,(d,_,_) in enumerate(docs):
        tgt[i,len(d)-1:]=-100
        if os.environ.get("MASK")=="1": tgt[i,:d.index(vocab["assistant"])]=-100
    loss=torch.nn.functional.cross_entropy(logits.reshape(-1,V),tgt.reshape(-1),ignore_index=-100)
    opt.zero_grad(); loss.backward()
    if os.environ.get("DECAY")=="1":
        for g in opt.param_groups: g["lr"]=float(sys.argv[1])*min((step+1)/(0.05*steps), 1.0)*max(0.0, 1-step/steps)
    opt.step()
    if step%100==0:
        with torch.no_grad():
            acc=0; n=0
            for i,(d,a,_) in enumerate(docs):
                acc+= int(out.logits[i,a-1].argmax().item()==d[a]); n+=1
        # eval on 64
        with torch.no_grad():
            ev=[doc(random.Random(10**6+k)) for k in range(64)]; c=0; cc=0; nc=0
            for d,a,cp in ev:
                lgs=m(torch.tensor([d])).logits[0]; c+=int(lgs[a-1].argmax().item()==d[a])
                for p in cp: cc+=int(lgs[p-1].argmax().item()==d[p]); nc+=1
        print(step, round(loss.item(),3), "eval letter acc", c/64, "copy acc", cc/max(nc,1), round(time.time()-t0,1), flush=True)
