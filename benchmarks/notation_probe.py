"""Which addition notation lets the tiny model add one digit more than it was shown? Notations
built so that a column's digits are found by content (a letter) rather than by distance, probed
after a warm start, before any RL (docs/curriculum.md, "Notations that were tried").

    python benchmarks/notation_probe.py gaps --gap 2 --steps 1000      # index hints, 0-2 random spaces after each hinted digit
    python benchmarks/notation_probe.py gaps --gap 5 --steps 1500      # 0-5 spaces
    python benchmarks/notation_probe.py indexed --gap 5                # (1200 steps) letters on both operands and the answer, a '#' sentinel
    python benchmarks/notation_probe.py indexed --gap 0 --shuffle      # the same, each operand's lettered digits in random order
    python benchmarks/notation_probe.py indexed --gap 0 --shuffle --steps 3000

gaps: the task's index hints (`task.hints`) with 0 to --gap spaces after each lettered digit of
the prompt, so that distances vary and only the letter finds a digit; the completion is the
task's hinted scratchpad. indexed: each operand gets a sentinel digit '#' at the letter before its
first digit, operand b's letters are upper case, a column names both letters
(`e7+E6+0=13;`), the sentinel's column ends the scratchpad (`b#;`), and the answer is written in
the same notation from the sentinel's letter (its digit the final carry): `\\boxed{b0c9d3e3}` for
347+586. --shuffle lists each operand's lettered digits in random order, so that no distance
finds a digit. Neither notation is a task option: none of them generalized (see the doc).

Warm start: Learner.warm_start on the teacher's demonstrations (recipes/addition_grpo_1m.yaml:
the 1.1M model; --error is the teacher's carry-drop rate, 0 by default here), --demos digit
counts equally often. Then for each digit count of --test, --problems problems: 8 samples at
temperature 1 (sample accuracy, pass@8) and one greedy completion, by HF generate. Prints the
host, the first demonstrations and one line a digit count with the last greedy example.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # appended: a PYTHONPATH tree comes first
from benchmarks.host import host
from benchmarks.length_generalization import sample_and_score
from rlreason.data.addition import HINTS, scratchpad


def gaps(a: int, b: int, d: int, rng: random.Random, gap: int, error: float):
    """The task's hinted problem with 0..gap spaces after each lettered digit: (prompt, completion, answer)."""
    off = rng.randint(0, len(HINTS) - d)

    def operand(n: int) -> str:
        parts = [HINTS[off + i] + c for i, c in enumerate(str(n).zfill(d))]
        return "".join(p + " " * rng.randint(0, gap) for p in parts).rstrip()

    prompt = f"{operand(a)}+{operand(b)}>"
    return prompt, scratchpad(a, b, d, error, rng, off), str(a + b)


def indexed(a: int, b: int, d: int, rng: random.Random, gap: int, shuffle: bool):
    """Letters on both operands (b's upper case) and on the answer, a '#' sentinel before each operand."""
    o = rng.randint(0, len(HINTS) - (d + 1))
    letters = HINTS[o:o + d + 1]

    def operand(n: int, upper: bool) -> str:
        case = str.upper if upper else str
        parts = [case(letters[0]) + "#"] + [case(letters[i + 1]) + c for i, c in enumerate(str(n).zfill(d))]
        if shuffle:
            rng.shuffle(parts)
        return "".join(p + " " * rng.randint(0, gap) for p in parts).rstrip()

    prompt = f"{operand(a, False)}+{operand(b, True)}>"
    da, db = str(a).zfill(d)[::-1], str(b).zfill(d)[::-1]
    cols, carry, digits = [], 0, []
    for i in range(d):
        letter, s = letters[d - i], int(da[i]) + int(db[i]) + carry
        cols.append(f"{letter}{da[i]}+{letter.upper()}{db[i]}+{carry}={s};")
        digits.append(s % 10)
        carry = s // 10
    answer = letters[0] + str(carry) + "".join(letters[i + 1] + str(digits[d - 1 - i]) for i in range(d))
    return prompt, "".join(cols) + f"{letters[0]}#;\\boxed{{{answer}}}", answer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notation", choices=["gaps", "indexed"])
    ap.add_argument("--gap", type=int, default=5, help="at most this many spaces after each lettered digit of the prompt")
    ap.add_argument("--shuffle", action="store_true", help="indexed: each operand's lettered digits in random order")
    ap.add_argument("--demos", type=int, nargs="+", default=[1, 2, 3], help="digit counts the teacher demonstrates")
    ap.add_argument("--test", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--steps", type=int, default=1200, help="warm-start steps (batch 64)")
    ap.add_argument("--error", type=float, default=0.0, help="gaps: the teacher's carry-drop rate")
    ap.add_argument("--problems", type=int, default=30)
    args = ap.parse_args(argv)

    import torch

    from rlreason.config import load_config
    from rlreason.learner.policy import Learner
    from rlreason.models import resolve_model

    def make(a, b, d, rng):
        if args.notation == "gaps":
            return gaps(a, b, d, rng, args.gap, args.error)
        return indexed(a, b, d, rng, args.gap, args.shuffle)

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "recipes/addition_grpo_1m.yaml"), [f"warm_start.steps={args.steps}"])
    learner = Learner(resolve_model(cfg.model), cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, 0, 10)
    ws, rng, pairs = cfg.warm_start, random.Random(1), []
    for _ in range(ws.steps * ws.batch_size):
        d = rng.choice(args.demos)
        a, b = rng.randint(10 ** (d - 1), 10**d - 1), rng.randint(10 ** (d - 1), 10**d - 1)
        prompt, completion, _ = make(a, b, d, rng)
        pairs.append((prompt, completion))
    print(f"{host()}, {time.strftime('%Y-%m-%d')}: {' '.join(sys.argv)}")
    print("demonstrations:", pairs[:2], flush=True)
    t0 = time.time()
    summary = learner.warm_start(pairs, ws)
    print(f"warm start: {args.steps} steps in {time.time() - t0:.0f} s, loss {summary['warm_start/loss_last']:.4f}", flush=True)

    model, tok = learner.model.eval(), learner.tokenizer
    torch.manual_seed(0)
    budget = (lambda d: 12 * d + 16) if args.notation == "gaps" else (lambda d: 16 * d + 30)
    for d in args.test:
        rng, problems = random.Random(5), []
        for _ in range(args.problems):
            a, b = rng.randint(10 ** (d - 1), 10**d - 1), rng.randint(10 ** (d - 1), 10**d - 1)
            prompt, _, gold = make(a, b, d, rng)
            problems.append((prompt, f"\\boxed{{{gold}}}"))
        row = sample_and_score(model, tok, problems, 8, budget(d), strip=True)
        print(f"{d} digits: sample acc {row['sample_acc']:.3f}  pass@8 {row['pass@8']:.3f}  "
              f"greedy {row['greedy']:.3f}  {row['greedy_example']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
