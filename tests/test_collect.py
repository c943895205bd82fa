"""Pure unit tests of the loop's batch collection (dynamic sampling) and of the async engine lock, with fake engines."""

import torch

from rlreason.config import load_config
from rlreason.data.addition import AdditionTask
from rlreason.data.stream import PromptStream
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
            texts = [f"\\boxed{{{a + b}}}", "\\boxed{0}"] if a % 2 == 0 else ["\\boxed{0}", "\\boxed{0}"]
            out.append([Sample([1], [2] * (i + 3), t, [0.0] * (i + 3), "stop", 0) for i, t in enumerate(texts[:n])])
        return out


def reward(prompt, completion, answer):
    return float(completion.endswith("{" + answer + "}"))


def test_dynamic_sampling_refills_with_new_prompts_until_full():
    cfg = load_config(None, ["rollout.prompts_per_step=4", "rollout.group_size=2", "algo.group_filter=mixed", "algo.max_sampling_rounds=10"])
    stream, engine = PromptStream(AdditionTask(3), seed=0), FakeEngine()
    problems, _, rewards, info = collect_groups(cfg, engine, stream, reward, step=1)
    rounds = info["rounds"]
    assert len(problems) == 4 and rewards.shape == (4, 2)
    assert all(p.meta["a"] % 2 == 0 for p in problems)  # only mixed groups kept
    assert torch.equal(rewards, torch.tensor([[1.0, 0.0]] * 4))
    assert rounds == len(engine.calls) > 1
    assert [n for n, _ in engine.calls][0] == 4 and sum(n for n, _ in engine.calls) == stream.position
    assert len({s for _, s in engine.calls}) == rounds  # a fresh seed each round


def test_no_filter_is_one_round_and_overlong_shaping_applies():
    cfg = load_config(None, ["rollout.prompts_per_step=3", "rollout.group_size=2", "rollout.max_tokens=5", "algo.overlong_buffer=2"])
    engine = FakeEngine()
    problems, _, rewards, info = collect_groups(cfg, engine, PromptStream(AdditionTask(3), seed=0), reward, step=2)
    assert (info["rounds"], info["reward_errors"], info["epoch"]) == (1, 0, 0) and len(problems) == 3 and engine.calls[0][1] == cfg.rollout.seed + 2 * 3 * 2
    # lengths 3 and 4 with L_max 5, buffer 2: penalties 0 and (3 - 4)/2 = -0.5
    base = torch.tensor([[float(p.meta["a"] % 2 == 0), 0.0] for p in problems])
    assert torch.equal(rewards, base + torch.tensor([[0.0, -0.5]] * 3))


def test_when_no_group_passes_the_last_round_is_kept_whole():
    cfg = load_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=2", "algo.group_filter=mixed", "algo.max_sampling_rounds=2"])

    class AllWrong(FakeEngine):
        def generate(self, prompts, n, *args, **kw):
            return [[Sample([1], [2], "\\boxed{0}", [0.0], "stop", 0)] * n for _ in prompts]

    problems, _, rewards, info = collect_groups(cfg, AllWrong(), PromptStream(AdditionTask(3), seed=0), reward, step=1)
    assert info["rounds"] == 2 and len(problems) == 2 and torch.equal(rewards, torch.zeros(2, 2))


def test_a_failing_reward_drops_its_group_and_is_counted():
    """A reward that raises on one sample: that group sits out (refilled), the failure is counted;
    failing on more than scoring.max_error_frac of the samples stops the run, naming a row."""
    import pytest

    from rlreason.rewards import RewardError

    def flaky(prompt, completion, answer):
        if prompt.startswith("1"):
            raise KeyError("no tests for this row")
        return reward(prompt, completion, answer)

    cfg = load_config(None, ["rollout.prompts_per_step=8", "rollout.group_size=2", "algo.max_sampling_rounds=4", "scoring.max_error_frac=0.5"])
    stream = PromptStream(AdditionTask(3), seed=0)
    problems, _, rewards, info = collect_groups(cfg, FakeEngine(), stream, flaky, step=1)
    assert len(problems) == 8 and not any(p.prompt.startswith("1") for p in problems)
    assert info["reward_errors"] > 0 and info["reward_errors"] % 2 == 0  # both samples of each such group
    assert rewards.shape == (8, 2)

    strict = load_config(None, ["rollout.prompts_per_step=8", "rollout.group_size=2", "scoring.max_error_frac=0.0"])
    with pytest.raises(RewardError, match=r"failed on \d+ of 16 samples.*row \d+ \(prompt '1.*no tests for this row"):
        collect_groups(strict, FakeEngine(), PromptStream(AdditionTask(3), seed=0), flaky, step=1)


class FakeStreamingEngine(FakeEngine):
    """Not vLLM: FakeEngine's groups, streamed in scrambled chunks (as requests finish)."""

    def generate_stream(self, prompts, n, temperature, top_p, max_tokens, seed):
        groups = self.generate(prompts, n, temperature, top_p, max_tokens, seed)
        order = list(range(len(groups)))[::-1]
        for k in range(0, len(order), 2):
            yield [(i, groups[i]) for i in order[k : k + 2]]


def test_streamed_groups_are_scored_in_prompt_order():
    """Scoring as groups arrive (any order) gives what scoring after the whole batch gives."""
    cfg = load_config(None, ["rollout.prompts_per_step=5", "rollout.group_size=2", "algo.group_filter=mixed", "algo.max_sampling_rounds=3"])
    plain = collect_groups(cfg, FakeEngine(), PromptStream(AdditionTask(3), seed=0), reward, step=1)
    streamed = collect_groups(cfg, FakeStreamingEngine(), PromptStream(AdditionTask(3), seed=0), reward, step=1)
    assert [p.prompt for p in streamed[0]] == [p.prompt for p in plain[0]]
    assert [[s.text for s in g] for g in streamed[1]] == [[s.text for s in g] for g in plain[1]]
    assert torch.equal(streamed[2], plain[2]) and streamed[3]["rounds"] == plain[3]["rounds"]
    assert streamed[3]["generate_s"] >= 0 and streamed[3]["score_s"] >= 0


class GatedEngine:
    """FAKE engine (not vLLM): a generate call that lasts until the test opens its gate, and a
    load_weights that records what it was asked."""

    def __init__(self):
        import threading

        self.gate, self.started, self.loaded = threading.Event(), threading.Event(), []

    def generate(self, *args):
        self.started.set()
        self.gate.wait(10)
        return []

    def load_weights(self, weights, version):
        self.loaded.append((weights, version, self.gate.is_set()))
        return version


class FakeLearner:  # FAKE: a learner with one weight
    def weights(self):
        return {"w": 1}


def test_a_push_waits_for_the_generation_in_flight_and_reports_the_wait():
    """WeightSync.push (here DirectSync over FAKE engine and learner) with the engine serialized
    behind the sync's lock, as the loop's async mode has it: the load waits for the generation in
    flight, and the wait is reported; with nothing in flight the wait is exactly 0."""
    import threading

    from rlreason.sync import DirectSync

    inner = GatedEngine()
    sync = DirectSync(FakeLearner(), inner)
    engine = sync.serialized(inner)
    gen = threading.Thread(target=engine.generate, args=(["1+1="], 1, 1.0, 1.0, 4, 0))
    gen.start()
    assert inner.started.wait(10)
    threading.Timer(0.3, inner.gate.set).start()  # the generation in flight ends 0.3 s from now
    pushed = sync.push(version=7)
    gen.join()
    assert inner.loaded == [({"w": 1}, 7, True)]  # loaded after the generation ended, never during it
    assert pushed.version == 7 and 0.25 <= pushed.wait_s < 10
    assert sync.push(version=8).wait_s == 0.0  # nothing in flight: nothing to wait for
    assert inner.loaded[-1][1] == 8
    assert not hasattr(engine, "generate_stream")  # the serialized engine streams only when the engine does


class ProbeEngine:
    """Not vLLM: scripted groups for the probe. A prompt whose first operand is 0 mod 3 is always
    solved, 1 mod 3 never, 2 mod 3 right on even sample positions only (mixed in any 2 samples)."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        self.calls.append((len(prompts), n, seed))
        out = []
        for p in prompts:
            a, b = (int(x) for x in p[:-1].split("+"))
            right = [a % 3 == 0 or (a % 3 == 2 and j % 2 == 0) for j in range(n)]
            out.append([Sample([1], [2] * 5, f"\\boxed{{{a + b if ok else 0}}}", [0.0] * 5, "stop", 0) for ok in right])
        return out


def test_a_probe_gives_the_rest_of_the_group_only_to_mixed_prompts():
    """rollout.probe=2 of group_size 4: every prompt gets 2 samples; only the mixed ones (a = 2
    mod 3) get 2 more, with seeds after the probe's; the others stop there, refilled by new
    prompts. Tokens count every sample, the probes' too."""
    cfg = load_config(None, ["rollout.prompts_per_step=6", "rollout.group_size=4", "rollout.probe=2",
                             "algo.group_filter=mixed", "algo.max_sampling_rounds=1"])
    stream, engine = PromptStream(AdditionTask(3), seed=0), ProbeEngine()
    drawn = PromptStream(AdditionTask(3), seed=0).next_batch(6)
    mixed = [p for p in drawn if p.meta["a"] % 3 == 2]
    assert 0 < len(mixed) < 6  # the seed gives both kinds
    problems, groups, rewards, info = collect_groups(cfg, engine, stream, reward, step=1)
    seed = cfg.rollout.seed + 1 * 6 * 4
    assert engine.calls == [(6, 2, seed), (len(mixed), 2, seed + 6 * 2)]
    assert [p.prompt for p in problems] == [p.prompt for p in mixed]
    assert all(len(g) == 4 for g in groups) and torch.equal(rewards, torch.tensor([[1.0, 0.0, 1.0, 0.0]] * len(mixed)))
    rec = info["record"]
    assert rec["sampling/probe_stopped"] == 6 - len(mixed) and rec["sampling/prompts"] == 6
    assert rec["sampling/tokens"] == 5 * (6 * 2 + len(mixed) * 2)


def test_when_every_probe_is_uniform_its_groups_are_kept_zeroed():
    cfg = load_config(None, ["rollout.prompts_per_step=3", "rollout.group_size=4", "rollout.probe=2",
                             "algo.group_filter=mixed", "algo.max_sampling_rounds=2"])

    class Solved(ProbeEngine):
        def generate(self, prompts, n, *args):
            self.calls.append((len(prompts), n))
            return [[Sample([1], [2], f"\\boxed{{{sum(int(x) for x in p[:-1].split('+'))}}}", [0.0], "stop", 0)] * n for p in prompts]

    engine = Solved()
    problems, groups, rewards, info = collect_groups(cfg, engine, PromptStream(AdditionTask(3), seed=0), reward, step=1)
    assert engine.calls == [(3, 2), (3, 2)]  # two rounds of probes, nothing more
    assert len(problems) == 3 and rewards.shape == (3, 2) and torch.equal(rewards, torch.zeros(3, 2))
    assert info["record"]["sampling/probe_stopped"] == 6


class VotingEngine:
    """Not vLLM: a group of four answers per prompt, 7 7 7 8 when the first operand is even,
    5 6 7 8 (no majority) when it is odd."""

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        out = []
        for p in prompts:
            answers = "7778" if int(p.split("+")[0]) % 2 == 0 else "5678"
            out.append([Sample([1], [2], f"1+1=2;\\boxed{{{x}}}", [0.0], "stop", 0) for x in answers[:n]])
        return out


def test_majority_labels_score_each_group_against_its_own_vote():
    """task.labels=majority: no gold in training. A group whose answer 7 has 3 of 4 votes scores
    1 1 1 0 (whatever the gold); one without an answer that reaches task.majority_min scores 0.
    The gold is read for labels/gold_agree only."""
    from rlreason.rewards import resolve_reward

    cfg = load_config(None, ["rollout.prompts_per_step=6", "rollout.group_size=4", "task.labels=majority", "task.majority_min=0.5"])
    problems, _, rewards, info = collect_groups(cfg, VotingEngine(), PromptStream(AdditionTask(3), seed=0), resolve_reward("math"), step=1)
    even = torch.tensor([int(p.prompt.split("+")[0]) % 2 == 0 for p in problems])
    assert 0 < even.sum() < 6
    assert torch.equal(rewards[even], torch.tensor([[1.0, 1.0, 1.0, 0.0]] * int(even.sum())))
    assert torch.equal(rewards[~even], torch.zeros(int((~even).sum()), 4))
    assert info["record"]["labels/labelled_frac"] == int(even.sum()) / 6
    assert info["record"]["labels/gold_agree"] == 0.0  # no 3-digit sum is 7
    strict = load_config(None, ["rollout.prompts_per_step=6", "rollout.group_size=4", "task.labels=majority", "task.majority_min=0.8"])
    _, _, rewards, _ = collect_groups(strict, VotingEngine(), PromptStream(AdditionTask(3), seed=0), resolve_reward("math"), step=1)
    assert torch.equal(rewards, torch.zeros(6, 4))  # 3 of 4 is below 0.8


def test_majority_label_by_hand():
    from rlreason.evaluate import majority_label

    assert majority_label(["7", "7", "8", None], 0.5) == "7"
    assert majority_label(["7", "8", None, None], 0.5) is None  # 1 of 4 < 2
    assert majority_label(["7", "8"], 0.5) == "7"  # a tie goes to the first seen, 1 of 2 >= 1
    assert majority_label([None, None], 0.1) is None


def test_a_gold_answer_of_none_still_reaches_the_reward():
    """With gold labels a problem's answer may be None (the reward reads what it needs from the
    prompt): its samples are scored, not zeroed as a group without a majority is."""
    from rlreason.types import Problem

    class NoAnswers:
        def __init__(self):
            self.epoch = 0

        def next_batch(self, n):
            return [Problem(prompt=f"{i}+0>", answer=None) for i in range(n)]

    cfg = load_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=2"])
    seen = []

    def reads_prompt(prompt, completion, answer):
        seen.append(answer)
        return 1.0

    _, _, rewards, _ = collect_groups(cfg, FakeEngine(), NoAnswers(), reads_prompt, step=1)
    assert torch.equal(rewards, torch.ones(2, 2)) and seen == [None] * 4
