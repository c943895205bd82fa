"""Test-time search: spend samples and a verifier's reads instead of parameters (issue 20).

Strategies, each at a budget of N generated candidates per problem (Snell et al. 2024; the
names of HuggingFace's search-and-learn):

    majority    N samples, their majority answer (self-consistency; no scorer)
    best_of_n   N samples, the one the scorer ranks highest
    weighted    N samples, each votes for its answer with its score; the heaviest answer wins
    beam        beam search over steps: N candidates a step; the scorer (a PRM) scores each
                step's end; the top N/M unfinished candidates are kept and the N continuations
                of the next step are shared among them (M each when there are N/M; M: the beam
                width); finished ones leave the beam
    dvts        diverse verifier tree search: N/M independent subtrees, each a beam of one:
                M continuations of its best candidate a step, the best one kept
    revise      sequential revisions (the model must be a revision model, rlreason.revision):
                N/L chains of L attempts (--chain), each attempt shown the chain's earlier
                ones; the answer is the weighted vote of all N attempts by the scorer

A strategy is written STRATEGY[:SCORER], the scorer as `rlreason eval --scorer` takes it
('prm:PATH[:last|min|prod]', 'rm:PATH', 'verifier': the oracle, always labelled as such).
beam and dvts score partial solutions, so they need a PRM. Their answer is the weighted vote
of their finished candidates (each votes for its answer with its score, the PRM's last step by
default), as search-and-learn aggregates them: the single highest-scored candidate is the
PRM's most over-estimated one more often as N grows. Without an
answer to vote on (code), the highest-scored finished candidate.

Compute: every strategy reports per problem the tokens it generated and the tokens its scorer
read (a PRM or RM reads the prompt and the whole completion each time it scores one; the oracle
and majority read none that count).

    tree_search(engine, score_fn, prompts, ...)   -> [SearchResult] per prompt
    sample_strategies(...)                        -> rows of the sampling strategies at each budget
    allocate(rows, difficulty, ...)               -> compute-optimal choice per difficulty bin
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass, field

from rlreason.evaluate import best_of_n, majority, weighted_maj_at_k

SAMPLED = ("majority", "best_of_n", "weighted")
TREE = ("beam", "dvts")
STRATEGIES = SAMPLED + TREE + ("revise",)


@dataclass(frozen=True)
class Strategy:
    name: str  # one of STRATEGIES
    scorer: str | None  # a scorer spec; None for majority

    @property
    def label(self) -> str:
        return self.name if self.scorer is None else f"{self.name}:{self.scorer}"


def parse_strategy(spec: str, default_scorer: str | None = None) -> Strategy:
    """'beam:prm:PATH' -> Strategy('beam', 'prm:PATH'); a strategy without a scorer takes
    `default_scorer` (--scorer). ConfigError naming --search for an unknown name, a scorer-less
    strategy that needs one, or beam/dvts with a scorer that cannot score steps."""
    from rlreason.config import ConfigError

    name, _, scorer = spec.partition(":")
    if name not in STRATEGIES:
        raise ConfigError(f"--search: unknown strategy {name!r} in {spec!r}; choose from {list(STRATEGIES)}")
    if name == "majority":
        if scorer:
            raise ConfigError(f"--search: {spec!r}: majority takes no scorer")
        return Strategy(name, None)
    scorer = scorer or (default_scorer if default_scorer not in (None, "none") else "")
    if not scorer:
        raise ConfigError(f"--search: {spec!r} needs a scorer: {name}:prm:PATH, {name}:rm:PATH or {name}:verifier")
    if name in TREE and not scorer.startswith("prm:"):
        raise ConfigError(f"--search: {spec!r}: {name} scores each step, so its scorer must be a PRM (prm:PATH), got {scorer!r}")
    if not (scorer == "verifier" or (scorer.startswith(("rm:", "prm:")) and scorer.split(":", 1)[1])):
        raise ConfigError(f"--search: {spec!r}: unknown scorer {scorer!r}; use 'prm:PATH[:last|min|prod]', 'rm:PATH' or 'verifier'")
    return Strategy(name, scorer)


def check_budgets(strategies: list[Strategy], budgets: list[int], width: int, chain: int = 1) -> None:
    """Before any work: every budget positive; for beam and dvts at least the beam width and a
    multiple of it (N/M beams or subtrees); for revise the same of the chain length (N/L
    chains). ConfigError naming both values."""
    from rlreason.config import ConfigError

    for flag, value in (("--beam-width", width), ("--chain", chain)):
        if value < 1:
            raise ConfigError(f"{flag}: must be at least 1, got {value}")
    for b in budgets:
        if b < 1:
            raise ConfigError(f"--budget: must be at least 1, got {b}")
        for names, flag, value, what in ((TREE, "--beam-width", width, "beam search and DVTS keep budget/width candidates"),
                                         (("revise",), "--chain", chain, "revise runs budget/chain chains")):
            if any(s.name in names for s in strategies):
                if b < value:
                    raise ConfigError(f"--budget {b} is smaller than {flag} {value}: {what}")
                if b % value:
                    raise ConfigError(f"--budget {b} is not a multiple of {flag} {value}: {what}")


# ---------------------------------------------------------------------------------------------
# Tree search over steps: beam search and DVTS
# ---------------------------------------------------------------------------------------------


@dataclass
class Node:
    """A partial or finished solution: the completion so far, its generated tokens, the score of
    its last step."""

    text: str
    tokens: int
    score: float = 0.0
    done: bool = False


@dataclass
class SearchResult:
    pick: Node | None  # the finished candidate with the highest score (None: nothing finished)
    finished: list[Node]
    generated_tokens: int = 0
    scorer_tokens: int = 0
    iterations: int = 0
    no_steps: int = 0  # finished candidates without a step delimiter (scored as one step)


def tree_search(
    engine, score_fn, prompts: list[str], budget: int, width: int, delimiter: str, subtrees: bool,
    temperature: float, top_p: float, step_tokens: int, max_tokens: int, max_steps: int, seed: int = 0,
) -> list[SearchResult]:
    """Beam search (subtrees=False) or DVTS (subtrees=True) for every prompt, all prompts' steps
    batched into one engine call per iteration.

    engine.generate(prompts, n, temperature, top_p, max_tokens, seed, stop) -> groups of Samples
    score_fn(prompts, completions) -> (scores, tokens read per row)

    Each problem holds groups: one beam of budget/width kept candidates (beam search), or
    budget/width subtrees that each keep one (DVTS). A step: every kept candidate is continued
    up to the delimiter (at most step_tokens tokens), the group's keep * width continuations
    shared among its kept candidates (width each when it kept `keep`); the new candidates are
    scored; a candidate whose step does not end with the delimiter (the model stopped, or ran
    out of tokens) or that reached max_tokens is finished; each group keeps its best `keep`
    unfinished ones (copies of one text included, as search-and-learn keeps them). At iteration max_steps - 1 the candidates are
    continued to the end."""
    keep = 1 if subtrees else budget // width
    n_groups = budget // width if subtrees else 1
    results = [SearchResult(None, []) for _ in prompts]
    # the kept candidates of each (problem, group); at the start, the empty completion, which
    # is continued keep * width times
    frontier = {(p, g): [Node("", 0)] for p in range(len(prompts)) for g in range(n_groups)}
    for it in range(max_steps):
        if not frontier:
            break
        last = it == max_steps - 1
        requests = [(key, node) for key, nodes in frontier.items() for node in nodes]
        # a group's keep * width continuations a step, shared by its kept candidates
        n_of = [(keep * width) // len(frontier[key]) for key, _ in requests]
        # one engine call per fan-out (the first step's differs from the rest)
        children: dict[tuple, list[Node]] = defaultdict(list)
        for n in sorted(set(n_of)):
            batch = [(key, node) for (key, node), k in zip(requests, n_of) if k == n]
            groups = engine.generate(
                [prompts[key[0]] + node.text for key, node in batch], n, temperature, top_p,
                max(1, max_tokens - min(node.tokens for _, node in batch)) if last else step_tokens,
                seed + 1_000_003 * it + 7919 * n, stop=None if last else [delimiter],
            )
            for (key, node), group in zip(batch, groups):
                for smp in group:
                    t = len(smp.completion_ids)
                    results[key[0]].generated_tokens += t
                    text, tokens = node.text + smp.text, node.tokens + t
                    done = last or not smp.text.endswith(delimiter) or tokens >= max_tokens
                    children[key].append(Node(text, tokens, done=done))
        flat = [(key, child) for key, kids in children.items() for child in kids]
        scores, read = score_fn([prompts[key[0]] for key, _ in flat], [c.text for _, c in flat])
        for (key, child), sc, r in zip(flat, scores, read):
            child.score = sc
            results[key[0]].scorer_tokens += r
        frontier = {}
        for key, kids in children.items():
            res = results[key[0]]
            res.iterations = it + 1
            for child in kids:
                if child.done:
                    res.finished.append(child)
                    res.no_steps += delimiter not in child.text
            alive = sorted((c for c in kids if not c.done), key=lambda c: -c.score)[:keep]  # stable: ties keep order
            if alive:
                frontier[key] = alive
    for res in results:
        res.pick = max(res.finished, key=lambda c: c.score, default=None)  # max: the first of equals
    return results


def revision_chains(engine, prompts: list[str], budget: int, chain: int, separator: str, max_previous: int,
                    temperature: float, top_p: float, max_tokens: int, seed: int = 0) -> list[list[tuple[str, int]]]:
    """Sequential revisions: for each prompt, budget/chain chains of `chain` attempts; attempt k
    of a chain continues the prompt followed by the chain's last `max_previous` attempts
    (rlreason.revision.revision_prompt). One engine call per attempt position, every chain of
    every prompt in it. Returns each prompt's attempts, (text, generated tokens), chain by chain."""
    from rlreason.revision import revision_prompt

    n_chains = budget // chain
    attempts = [[[] for _ in range(n_chains)] for _ in prompts]
    keys = [(p, c) for p in range(len(prompts)) for c in range(n_chains)]
    for k in range(chain):
        texts = [revision_prompt(prompts[p], [a for a, _ in attempts[p][c]][-max_previous:] if max_previous else [], separator) for p, c in keys]
        groups = engine.generate(texts, 1, temperature, top_p, max_tokens, seed + 1_000_003 * k)
        for (p, c), group in zip(keys, groups):
            attempts[p][c].append((group[0].text, len(group[0].completion_ids)))
    return [[a for chain_ in per for a in chain_] for per in attempts]


def weighted_pick(nodes: list[Node], answers: list[str | None]) -> Node | None:
    """The first node whose answer has the largest summed score over `nodes` (nodes without an
    answer do not vote); None when none has one."""
    weight: dict[str, float] = {}
    for node, a in zip(nodes, answers):
        if a is not None:
            weight[a] = weight.get(a, 0.0) + node.score
    if not weight:
        return None
    best = max(weight.values())
    return next(n for n, a in zip(nodes, answers) if a is not None and weight[a] == best)


# ---------------------------------------------------------------------------------------------
# The sampling strategies at each budget, from one set of samples
# ---------------------------------------------------------------------------------------------


def sample_strategy_row(
    strategy: Strategy, budget: int, correct: list[bool], answers: list[str | None] | None,
    scores: list[float] | None, gen_tokens: list[int], read_tokens: list[int],
) -> dict:
    """One problem's outcome for a sampling strategy at `budget`, from the problem's samples in
    order (the first `budget` are used): correct (0/1), generated tokens, scorer tokens."""
    k = budget
    if strategy.name == "majority":
        i = majority(answers[:k]) if answers is not None else None
        ok = float(i is not None and correct[i])
    elif strategy.name == "best_of_n":
        ok = best_of_n(scores, correct, k)
    else:
        ok = weighted_maj_at_k(answers, scores, correct, k)
    counted = strategy.scorer not in (None, "verifier")  # the oracle's reads are not compute a learned method can spend
    return {"correct": ok, "generated_tokens": sum(gen_tokens[:k]), "scorer_tokens": sum(read_tokens[:k]) if counted else 0}


# ---------------------------------------------------------------------------------------------
# Summaries and compute-optimal allocation: pure functions of the per-problem rows
# ---------------------------------------------------------------------------------------------


def summarize(rows: list[dict]) -> dict:
    """{strategy label: {budget: {accuracy, generated_tokens, scorer_tokens (means per problem), n}}}."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r["strategy"]][r["budget"]].append(r)
    return {
        s: {b: {"accuracy": _mean(rs, "correct"), "generated_tokens": _mean(rs, "generated_tokens"),
                "scorer_tokens": _mean(rs, "scorer_tokens"), "n": len(rs)} for b, rs in sorted(by.items())}
        for s, by in acc.items()
    }


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else float("nan")


def difficulty_bins(difficulty: dict[str, float], n_bins: int, ids: list[str]) -> tuple[list[float], dict[str, int]]:
    """Quantile edges of `difficulty` over `ids` and each id's bin: 0 holds the lowest estimates
    (up to and including the first edge), n_bins - 1 the highest."""
    values = sorted(difficulty[i] for i in ids)
    edges = [values[max(0, (len(values) * q) // n_bins - 1)] for q in range(1, n_bins)]
    return edges, {i: sum(difficulty[i] > e for e in edges) for i in difficulty}


def allocate(
    rows: list[dict], difficulty: dict[str, float], reference: tuple[str, int], candidates: list[str],
    val_ids: list[str], test_ids: list[str], n_bins: int = 4, probe_tokens: dict[str, float] | None = None,
    reuse: frozenset[str] = frozenset(),
) -> dict:
    """Compute-optimal allocation (Snell et al. 2024, section 3.2, by estimated difficulty).

    `difficulty`: each problem's estimate made without its gold answer (here the PRM's mean score
    of a few samples: higher = easier). Problems are binned by quantiles of it over the
    validation ids. In each bin, on the validation ids, the choice is the (strategy, budget) of
    `candidates` with the fewest generated tokens whose accuracy there is at least the
    reference's (reference: (strategy label, budget)); a bin where none is, takes the
    reference itself. The choice is then applied to the test ids. `probe_tokens`: tokens the
    difficulty estimate generated per problem, added to the allocation's cost, except for the
    strategies in `reuse`, whose samples begin with the probe's own (the same seeds): their cost
    is the larger of the two.
    Returns the bins, the choice per bin, and on the test ids the allocation's and the
    reference's accuracy and mean generated tokens."""
    by = {(r["strategy"], r["budget"], r["id"]): r for r in rows}
    configs = sorted({(r["strategy"], r["budget"]) for r in rows if r["strategy"] in candidates} | {reference})
    edges, bin_of = difficulty_bins(difficulty, n_bins, val_ids)

    def mean(config, ids, key):
        got = [by[(*config, i)][key] for i in ids if (*config, i) in by]
        return sum(got) / len(got) if got else float("nan")

    choice = {}
    for b in range(n_bins):
        ids = [i for i in val_ids if bin_of[i] == b]
        if not ids:
            choice[b] = reference
            continue
        target = mean(reference, ids, "correct")
        fit = [c for c in configs if all((*c, i) in by for i in ids) and mean(c, ids, "correct") >= target]
        choice[b] = min(fit, key=lambda c: (mean(c, ids, "generated_tokens"), c)) if fit else reference
    probe = probe_tokens or {}
    test = [(i, choice[bin_of[i]]) for i in test_ids if (*choice[bin_of[i]], i) in by and (*reference, i) in by]
    alloc_correct = [by[(*c, i)]["correct"] for i, c in test]
    def cost(c, i):
        gen, extra = by[(*c, i)]["generated_tokens"], probe.get(i, 0.0)
        return max(gen, extra) if c[0] in reuse else gen + extra

    alloc_tokens = [cost(c, i) for i, c in test]
    ref_rows = [by[(*reference, i)] for i, _ in test]
    n = max(len(test), 1)
    return {
        "reference": {"strategy": reference[0], "budget": reference[1]},
        "bins": {"edges": edges, "choice": {b: {"strategy": c[0], "budget": c[1]} for b, c in choice.items()},
                 "test_problems": {b: sum(1 for i, _ in test if bin_of[i] == b) for b in range(n_bins)}},
        "test": {
            "n": len(test),
            "allocation": {"accuracy": sum(alloc_correct) / n, "generated_tokens": sum(alloc_tokens) / n},
            "reference": {"accuracy": sum(r["correct"] for r in ref_rows) / n,
                          "generated_tokens": sum(r["generated_tokens"] for r in ref_rows) / n},
        },
    }


def token_ratio(alloc: dict) -> float:
    """The allocation's generated tokens over the reference's, on the test ids."""
    t = alloc["test"]
    return t["allocation"]["generated_tokens"] / t["reference"]["generated_tokens"] if t["reference"]["generated_tokens"] else math.nan


def plot_search(summary: dict, path, title: str, alloc: dict | None = None) -> None:
    """Accuracy against mean generated tokens per problem, one line per strategy (a point per
    budget), the allocation as a star; the oracle drawn dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, by in summary.items():
        budgets = sorted(by)
        xs = [by[b]["generated_tokens"] for b in budgets]
        ys = [by[b]["accuracy"] for b in budgets]
        oracle = label.endswith(":verifier")
        ax.plot(xs, ys, "--" if oracle else "-", marker="o", label=label + (" (oracle ceiling)" if oracle else ""))
        for x, y, b in zip(xs, ys, budgets):
            ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
    if alloc:
        a = alloc["test"]["allocation"]
        ax.plot([a["generated_tokens"]], [a["accuracy"]], "k*", markersize=12, label="compute-optimal (test split)")
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem (mean)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class SearchSettings:
    """What `rlreason eval --search` adds to an eval: strategies, budgets, the beam width."""

    strategies: list[Strategy] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    width: int = 4
    step_tokens: int = 64
    max_steps: int = 40
    difficulty_samples: int = 4  # samples whose PRM scores estimate a problem's difficulty
    bins: int = 4


# ---------------------------------------------------------------------------------------------
# `rlreason eval --search`: every strategy at every budget, resumable
# ---------------------------------------------------------------------------------------------

CHUNK = 50  # problems a unit of work: rows are written per chunk, and a rerun skips finished chunks
RESUME_KEYS = ("model", "dataset", "split", "fields", "answer_extract", "reward", "template", "temperature", "top_p",
               "max_tokens", "max_model_len", "limit", "seed", "dtype", "beam_width", "step_tokens", "max_steps", "difficulty_samples", "chain")


def _jsonl(path) -> list[dict]:
    import json

    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed run may be cut
            continue
    return rows


def _append(path, rows: list[dict]) -> None:
    import json

    if not rows:
        return
    cut = path.is_file() and path.stat().st_size and path.read_bytes()[-1:] != b"\n"  # a killed write's last line
    with open(path, "a") as f:
        f.write(("\n" if cut else "") + "".join(json.dumps(r) + "\n" for r in rows))
        f.flush()


def _scorer(spec: str):
    """score_fn(prompts, completions, rewards) -> (scores, tokens read) for a scorer spec."""
    from rlreason.evaluate import PRMScorer, RewardModelScorer, parse_prm_scorer

    if spec == "verifier":
        return lambda prompts, completions, rewards: (list(rewards), [0] * len(rewards))
    model = PRMScorer(*parse_prm_scorer(spec)) if spec.startswith("prm:") else RewardModelScorer(spec[3:])

    def score(prompts, completions, rewards=None):
        return model(prompts, completions), list(model.read)

    return score


@contextlib.contextmanager
def _shut(engine):
    """Shut the engine down at the end, whatever happens (rlreason.rollout.vllm_engine.VLLMEngine.shutdown)."""
    try:
        yield
    finally:
        if engine is not None:
            engine.shutdown()


def run_search(s) -> dict:
    """Every strategy of s.search at every budget of s.budgets on the data set; rows per problem
    in search.jsonl (appended chunk by chunk: a rerun into the same --out skips what is there),
    the summary, timing and compute-optimal allocation in search.json, and search.png."""
    import json
    import os
    import time
    from pathlib import Path

    from rlreason.config import ConfigError
    from rlreason.data.datasets import spec_dict
    from rlreason.evaluate import (
        dataset_step_delimiter,
        prepare_eval,
        score_samples,
        start_engine,
        vote_answer,
    )
    from rlreason.progress import Progress

    s.check()
    strategies = [parse_strategy(x, s.scorer) for x in s.search]
    budgets = sorted(set(s.budgets or [s.n]))
    check_budgets(strategies, budgets, s.beam_width, s.chain)
    scorer_specs = list(dict.fromkeys(st.scorer for st in strategies if st.scorer))
    t_start = time.time()
    spec, model_path, max_len, es = prepare_eval(s, scorer_specs)
    delimiter = dataset_step_delimiter(spec)
    revision = None
    if any(st.name == "revise" for st in strategies):
        from rlreason.revision import revision_meta

        revision = revision_meta(model_path)  # not a revision model: refused before any work
    out = Path(s.out) if s.out else Path("runs") / f"search-{spec.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(s, k) for k in RESUME_KEYS}
    saved = out / "search_settings.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        if diff := [k for k in RESUME_KEYS if k in before and before[k] != json.loads(json.dumps(settings[k]))]:
            raise ConfigError(f"--out {out}: holds a search with other settings ({', '.join(f'{k}: {before[k]!r} there, {settings[k]!r} now' for k in diff)}); "
                              "choose another --out, or the same settings to go on with it")
    saved.write_text(json.dumps(settings, indent=2) + "\n")
    rows_path, timing_path, difficulty_path = out / "search.jsonl", out / "timing.jsonl", out / "difficulty.jsonl"
    done = {(r["strategy"], r["budget"], r["id"]) for r in _jsonl(rows_path)}
    have_difficulty = {r["id"] for r in _jsonl(difficulty_path)}
    ids = [p.meta["id"] for p in es.problems]
    sampled = [st for st in strategies if st.name in SAMPLED]
    tree = [st for st in strategies if st.name in (*TREE, "revise")]
    # the difficulty probe of the allocation: a PRM, and a sampling strategy for the reference
    prm_spec = next((x for x in scorer_specs if x.startswith("prm:")), None) if sampled else None
    n_sample = max([max(budgets)] * bool(sampled) + [s.difficulty_samples] * bool(prm_spec), default=0)
    chunks = [range(i, min(i + CHUNK, len(ids))) for i in range(0, len(ids), CHUNK)]
    loaded = {}

    def scorer(spec_):
        if spec_ not in loaded:
            loaded[spec_] = _scorer(spec_)
        return loaded[spec_]

    def judge(pairs):  # [(problem index, text)] -> rewards
        from types import SimpleNamespace

        return score_samples(es, [(i, SimpleNamespace(text=t)) for i, t in pairs]).values

    engine = None
    t_engine = time.time()
    todo_sampled = [c for c in chunks if n_sample and any(
        (st.label, b, ids[i]) not in done for st in sampled for b in budgets for i in c) or (prm_spec and any(ids[i] not in have_difficulty for i in c))]
    todo_tree = [(st, b, c) for st in tree for b in budgets for c in chunks if any((st.label, b, ids[i]) not in done for i in c)]
    if todo_sampled or todo_tree:
        engine = start_engine(s, model_path, max_len)
    timing_rows = [{"part": "engine_start", "s": time.time() - t_engine}] if engine else []
    vote = bool(es.spec.extractor)
    total = sum(len(c) for c in todo_sampled) + sum(len(c) for _, _, c in todo_tree)
    with Progress(total, "search", unit="problem") as bar, _shut(engine):
        for c in todo_sampled:
            t0 = time.time()
            prompts = [es.prompts[i] for i in c]
            groups = engine.generate(prompts, n_sample, s.temperature, s.top_p, s.max_tokens, s.seed + c.start * n_sample)
            t_gen = time.time() - t0
            flat = [(i, smp) for i, g in zip(c, groups) for smp in g]
            t1 = time.time()
            rewards = score_samples(es, flat).values
            new_timing = [{"part": "sample", "s": t_gen, "problems": len(c), "samples": len(flat)},
                          {"part": "judge", "s": time.time() - t1, "samples": len(flat)}]
            texts, row_prompts = [smp.text for _, smp in flat], [es.prompts[i] for i, _ in flat]
            scores, reads = {}, {}
            for spec_ in scorer_specs if sampled else []:
                t1 = time.time()
                scores[spec_], reads[spec_] = scorer(spec_)(row_prompts, texts, rewards)
                new_timing.append({"part": f"score {spec_}", "s": time.time() - t1, "samples": len(flat)})
            new_rows, diff_rows = [], []
            for j, i in enumerate(c):
                sl = slice(j * n_sample, (j + 1) * n_sample)
                group = groups[j]
                correct = [v >= 1.0 for v in rewards[sl]]
                answers = [vote_answer(smp.text, es.spec.extractor) for smp in group] if vote else None
                gen = [len(smp.completion_ids) for smp in group]
                for st in sampled:
                    sc = scores[st.scorer][sl] if st.scorer else None
                    rd = reads[st.scorer][sl] if st.scorer else [0] * len(gen)
                    for b in budgets:
                        if (st.label, b, ids[i]) in done:
                            continue
                        row = sample_strategy_row(st, b, correct, answers, sc, gen, rd)
                        if st.scorer and st.scorer.startswith("prm:"):  # samples the PRM read as one step
                            row["no_steps"] = sum(delimiter not in smp.text for smp in group[:b])
                            row["all_no_steps"] = row["no_steps"] == b
                        new_rows.append({"strategy": st.label, "budget": b, "id": ids[i], **row})
                if prm_spec and ids[i] not in have_difficulty:
                    k = s.difficulty_samples
                    if prm_spec not in scores:
                        scores[prm_spec], reads[prm_spec] = scorer(prm_spec)(row_prompts, texts, rewards)
                    probe = scores[prm_spec][sl][:k]
                    diff_rows.append({"id": ids[i], "difficulty": sum(probe) / len(probe),
                                      "probe_tokens": sum(gen[:k]), "probe_scorer_tokens": sum(reads[prm_spec][sl][:k])})
            _append(rows_path, new_rows)
            _append(difficulty_path, diff_rows)
            _append(timing_path, new_timing)
            bar.update(len(c))
        for st, b, c in todo_tree:
            t0 = time.time()
            if st.name == "revise":
                _append(rows_path, revise_rows(engine, es, st, b, c, s, revision, scorer(st.scorer), judge, done, ids))
                _append(timing_path, [{"part": f"{st.label}@{b}", "s": time.time() - t0, "problems": len(c)}])
                bar.update(len(c))
                continue
            results = tree_search(
                engine, scorer(st.scorer), [es.prompts[i] for i in c], b, s.beam_width, delimiter, st.name == "dvts",
                s.temperature, s.top_p, s.step_tokens or s.max_tokens, s.max_tokens, s.max_steps, s.seed + c.start,
            )
            if es.spec.extractor:  # the answer of the finished candidates' weighted vote (search-and-learn's weighted aggregation)
                for r in results:
                    r.pick = weighted_pick(r.finished, [vote_answer(x.text, es.spec.extractor) for x in r.finished]) or r.pick
            picks = [(i, r.pick.text if r.pick else "") for i, r in zip(c, results)]
            rewards = judge(picks)
            # was any finished candidate right? (each distinct text judged once): what a perfect final pick would get
            finished = [(i, t) for i, r in zip(c, results) for t in dict.fromkeys(x.text for x in r.finished)]
            right = {(i, t) for (i, t), v in zip(finished, judge(finished)) if v >= 1.0}
            any_right = {i for i, _ in right}
            new_rows = [
                {"strategy": st.label, "budget": b, "id": ids[i], "correct": float(rw >= 1.0), "generated_tokens": r.generated_tokens,
                 "scorer_tokens": r.scorer_tokens, "iterations": r.iterations, "finished": len(r.finished), "no_steps": r.no_steps,
                 "all_no_steps": r.no_steps == len(r.finished), "any_finished_correct": float(i in any_right),
                 "answer": vote_answer(r.pick.text, es.spec.extractor) if (vote and r.pick) else None}
                for i, r, rw in zip(c, results, rewards) if (st.label, b, ids[i]) not in done
            ]
            _append(rows_path, new_rows)
            _append(timing_path, [{"part": f"{st.label}@{b}", "s": time.time() - t0, "problems": len(c)}])
            bar.update(len(c))
    labels = {st.label for st in strategies}
    wanted = set(ids)
    rows = [r for r in _jsonl(rows_path) if r["strategy"] in labels and r["budget"] in budgets and r["id"] in wanted]
    summary = summarize(rows)
    timing = defaultdict(float)
    for r in _jsonl(timing_path) + timing_rows:
        timing[r["part"]] += r["s"]
    alloc = None
    difficulty = {r["id"]: r for r in _jsonl(difficulty_path) if r["id"] in wanted}
    learned = [lab for lab in summary if not lab.endswith(":verifier")]
    reference = next((lab for name in ("weighted", "best_of_n") for lab in learned if lab.startswith(name + ":")), None)
    if prm_spec and reference and len(difficulty) == len(ids) and len(ids) >= 2 * s.bins:
        alloc = allocate(rows, {i: d["difficulty"] for i, d in difficulty.items()}, (reference, max(budgets)), learned,
                         ids[0::2], ids[1::2], s.bins, {i: d["probe_tokens"] for i, d in difficulty.items()},
                         frozenset(st.label for st in sampled))
        alloc["difficulty"] = (f"mean {prm_spec} score of each problem's first {s.difficulty_samples} samples (no gold answer); their tokens "
                               "are added to the allocation's cost, except where the chosen strategy samples them anyway (majority, best_of_n, weighted)")
        alloc["split"] = "validation: problems 0, 2, 4, ...; test: problems 1, 3, 5, ..."
        alloc["token_ratio"] = token_ratio(alloc)
    # problems where no sample (no finished candidate) had a step delimiter: counted, never silently 0
    no_steps = {lab: sum(r.get("all_no_steps", False) for r in rows if r["strategy"] == lab) for lab in summary}
    report = {
        "model": s.model, "model_path": model_path, "dataset": spec_dict(spec), "n_problems": len(ids),
        "settings": settings | {"search": [st.label for st in strategies], "budgets": budgets, "max_model_len": max_len},
        "step_delimiter": delimiter, "summary": summary, "allocation": alloc, "timing_s": dict(timing),
        "problems_without_steps": no_steps, "wall_s": time.time() - t_start,
        "host": {"cpus": os.cpu_count()},
        "files": {"rows": "search.jsonl", "difficulty": "difficulty.jsonl", "timing": "timing.jsonl", "plot": "search.png"},
    }
    (out / "search.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot_search(summary, out / "search.png", f"{s.model} on {spec.label}: {len(ids)} problems", alloc)
    report["out"] = str(out)
    return report


def revise_rows(engine, es, st: Strategy, budget: int, c: range, s, revision: dict, score_fn, judge, done: set, ids: list) -> list[dict]:
    """The rows of `revise` at `budget` for the problems `c`: every attempt judged and scored (the
    scorer reads the problem's prompt and the attempt, as for any sample), the weighted vote of
    all of them; each row also says how often the chains' first and last attempts were right."""
    from rlreason.evaluate import vote_answer

    attempts = revision_chains(engine, [es.prompts[i] for i in c], budget, s.chain, revision["separator"], revision["max_previous"],
                               s.temperature, s.top_p, s.max_tokens, s.seed + c.start)
    flat = [(i, text) for i, per in zip(c, attempts) for text, _ in per]
    rewards = judge(flat)
    scores, reads = score_fn([es.prompts[i] for i, _ in flat], [t for _, t in flat], rewards)
    rows = []
    for j, (i, per) in enumerate(zip(c, attempts)):
        sl = slice(j * budget, (j + 1) * budget)
        correct = [v >= 1.0 for v in rewards[sl]]
        answers = [vote_answer(t, es.spec.extractor) for t, _ in per] if es.spec.extractor else None
        row = sample_strategy_row(Strategy("weighted", st.scorer), budget, correct, answers, scores[sl], [n for _, n in per], reads[sl])
        if (st.label, budget, ids[i]) not in done:
            rows.append({"strategy": st.label, "budget": budget, "id": ids[i], **row,
                         "first_attempt_correct": sum(correct[0::s.chain]) / (budget // s.chain),
                         "last_attempt_correct": sum(correct[s.chain - 1 :: s.chain]) / (budget // s.chain)})
    return rows


def format_search(report: dict) -> str:
    """The console table: accuracy (generated tokens, scorer tokens per problem) per strategy and budget."""
    summary = report["summary"]
    budgets = sorted({b for by in summary.values() for b in by})
    width = max([len(lab) for lab in summary] + [8])
    lines = [f"{'strategy':<{width}} " + " ".join(f"{'N=' + str(b):>24}" for b in budgets)]
    for lab, by in summary.items():
        cells = [f"{by[b]['accuracy']:.3f} ({by[b]['generated_tokens']:.0f}+{by[b]['scorer_tokens']:.0f} tok)" if b in by else "" for b in budgets]
        lines.append(f"{lab:<{width}} " + " ".join(f"{c:>24}" for c in cells))
    lines.append("accuracy (tokens generated + tokens the scorer read, per problem); ':verifier' is the oracle ceiling")
    if bad := {lab: n for lab, n in report.get("problems_without_steps", {}).items() if n}:
        lines.append("problems none of whose samples had a step delimiter (the PRM read each as one step): " + ", ".join(f"{lab}: {n}" for lab, n in bad.items()))
    if a := report.get("allocation"):
        t = a["test"]
        lines.append(
            f"compute-optimal on the test split ({t['n']} problems): {t['allocation']['accuracy']:.3f} with "
            f"{t['allocation']['generated_tokens']:.0f} tokens a problem, against {a['reference']['strategy']}@{a['reference']['budget']}'s "
            f"{t['reference']['accuracy']:.3f} with {t['reference']['generated_tokens']:.0f} ({a['token_ratio']:.2f}x the tokens)"
        )
    return "\n".join(lines)
