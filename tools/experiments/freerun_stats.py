"""How a `fourd demo --reply option-check` run's free-running answers handle the option check.

    python3 freerun_stats.py DEMO_DIR/heldout_predictions.jsonl [...]

Per file: answer letter right, reasoning label right, check lines right (the line's letter and
label are the prompt's option at that place), answers with all four lines right, and answers whose
letter is the one option their own check marked `yes` (README, "The demo").
"""
import json, re, sys

for path in sys.argv[1:]:
    rows = [json.loads(line) for line in open(path)]
    lines_ok = all_ok = follows = letter = reason = 0
    for r in rows:
        opts = [o.split(". ", 1)[1] for o in r["options"]]
        checks = re.findall(r"\n([A-D])\. (.*?): (yes|no)", r["raw"])
        ok = [i < len(checks) and checks[i][0] == "ABCD"[i] and checks[i][1] == opts[i] for i in range(len(opts))]
        lines_ok += sum(ok)
        all_ok += all(ok)
        yes = [c[0] for c in checks if c[2] == "yes"]
        follows += len(yes) == 1 and r["pred"] == yes[0]
        letter += r["pred"] == r["gt"]
        reason += r.get("reasoning_label") == opts["ABCD".index(r["gt"])]
    n = len(rows)
    print(f"{path}: n={n} letter={letter / n:.3f} reasoning={reason / n:.3f} "
          f"check_lines_right={lines_ok / (4 * n):.3f} all_four_right={all_ok} follows_own_yes={follows}")
