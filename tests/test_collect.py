"""Pure unit test of the loop's batch collection (dynamic sampling), with a fake engine."""

import torch

from rlreason.config import load_config
from rlreason.data.addition import PromptStream
from rlreason.loop import collect_groups
from rlreason.types import Sample


class FakeEngine:
    """Not vLLM: returns scripted completions, so the refill logic can be checked by hand.
    Prompts whose first operand is even get a mixed group (one right, one wrong answer);
    odd ones get an all-wrong group."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        self.calls.append((len(prompts), seed))
        out = []
        for p in prompts:
            a, b = (int(x) for x in p[:-1].split("+"))
            texts = [f";={a + b}", ";=0"] if a % 2 == 0 else [";=0", ";=0"]
            out.append([Sample([1], [2] * (i + 3), t, [0.0] * (i + 3), "stop", 0) for i, t in enumerate(texts[:n])])
        return out


def reward(prompt, completion, answer):
    return float(completion.endswith("=" + answer))


def test_dynamic_sampling_refills_with_new_prompts_until_full():
    cfg = load_config(None, ["rollout.prompts_per_step=4", "rollout.group_size=2", "algo.group_filter=mixed", "algo.max_sampling_rounds=10"])
    stream, engine = PromptStream(3, seed=0), FakeEngine()
    problems, groups, rewards, rounds = collect_groups(cfg, engine, stream, reward, step=1)
    assert len(problems) == 4 and rewards.shape == (4, 2)
    assert all(p.meta["a"] % 2 == 0 for p in problems)  # only mixed groups kept
    assert torch.equal(rewards, torch.tensor([[1.0, 0.0]] * 4))
    assert rounds == len(engine.calls) > 1
    assert [n for n, _ in engine.calls][0] == 4 and sum(n for n, _ in engine.calls) == stream.position
    assert len({s for _, s in engine.calls}) == rounds  # a fresh seed each round


def test_no_filter_is_one_round_and_overlong_shaping_applies():
    cfg = load_config(None, ["rollout.prompts_per_step=3", "rollout.group_size=2", "rollout.max_tokens=5", "algo.overlong_buffer=2"])
    engine = FakeEngine()
    problems, groups, rewards, rounds = collect_groups(cfg, engine, PromptStream(3, seed=0), reward, step=2)
    assert rounds == 1 and len(problems) == 3 and engine.calls[0][1] == cfg.rollout.seed + 2 * 3
    # lengths 3 and 4 with L_max 5, buffer 2: penalties 0 and (3 - 4)/2 = -0.5
    base = torch.tensor([[float(p.meta["a"] % 2 == 0), 0.0] for p in problems])
    assert torch.equal(rewards, base + torch.tensor([[0.0, -0.5]] * 3))


def test_when_no_group_passes_the_last_round_is_kept_whole():
    cfg = load_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=2", "algo.group_filter=mixed", "algo.max_sampling_rounds=2"])

    class AllWrong(FakeEngine):
        def generate(self, prompts, n, *args, **kw):
            return [[Sample([1], [2], ";=0", [0.0], "stop", 0)] * n for _ in prompts]

    problems, groups, rewards, rounds = collect_groups(cfg, AllWrong(), PromptStream(3, seed=0), reward, step=1)
    assert rounds == 2 and len(problems) == 2 and torch.equal(rewards, torch.zeros(2, 2))
