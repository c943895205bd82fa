"""Process supervision data (rlreason/prm.py): steps, the exact truth of an addition scratchpad's
steps, and step labels from rollouts: by hand through a scripted engine, and through the real
shared vLLM engine."""

from __future__ import annotations

import pytest

from rlreason.data.addition import make_problem, scratchpad
from rlreason.prm import STEP_DELIMITERS, addition_steps_correct, label_steps, split_steps
from rlreason.rewards import REWARDS
from rlreason.types import Sample

RIGHT = "7+6+0=13;4+8+1=13;3+5+1=9;\\boxed{933}"  # 347+586
DROPPED = "7+6+0=13;4+8+0=12;3+5+1=9;\\boxed{923}"  # the teacher's blind spot: the inner carry dropped


def test_split_steps_gives_the_text_back_step_by_step():
    assert split_steps(RIGHT, ";") == ["7+6+0=13;", "4+8+1=13;", "3+5+1=9;", "\\boxed{933}"]
    assert split_steps("a\n\nb\n\n\n\nc", STEP_DELIMITERS["math"]) == ["a\n\n", "b\n\n\n\n", "c"]  # a run stays with its step
    assert split_steps("x;", ";") == ["x;"] and split_steps("no delimiter", ";") == ["no delimiter"] and split_steps("", ";") == []
    for text in (RIGHT, DROPPED, "a;;b;", ";lead"):
        assert "".join(split_steps(text, ";")) == text
    with pytest.raises(ValueError):
        split_steps(RIGHT, "")


def test_addition_steps_correct_is_the_exact_truth_of_each_prefix():
    assert scratchpad(347, 586, 3) == RIGHT
    assert addition_steps_correct("347+586>", split_steps(RIGHT, ";")) == [True, True, True, True]
    assert addition_steps_correct("347+586>", split_steps(DROPPED, ";")) == [True, False, False, False]
    assert addition_steps_correct("347+586>", ["7+6+0=13;", "4+8+1=13;", "3+5+1=9;", "\\boxed{932}"]) == [True, True, True, False]
    assert addition_steps_correct("347+586>", ["6+7+0=13;"]) == [False]  # the operands' digits, in order


class ScriptedEngine:
    """A fake engine for this pure unit test of the labelling around it: generate() answers from
    a script, {prompt: [completion texts]}, cycled to n samples."""

    def __init__(self, script: dict[str, list[str]]):
        self.script, self.calls = script, []

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        self.calls.append((list(prompts), n))
        return [[Sample([], [], self.script[p][i % len(self.script[p])], [], "stop", 0) for i in range(n)] for p in prompts]


def test_labels_by_hand_through_a_scripted_engine():
    """One problem, two samples (the right scratchpad and the dropped carry), 4 rollouts a step.
    After the right first step 3 of 4 continuations reach 933; after a wrong step none can."""
    p = make_problem(347, 586)
    finish_right, finish_wrong = "4+8+1=13;3+5+1=9;\\boxed{933}", "4+8+0=12;3+5+1=9;\\boxed{923}"
    script = {
        p.prompt: [RIGHT, DROPPED],
        p.prompt + "7+6+0=13;": [finish_right, finish_right, finish_right, finish_wrong],
        p.prompt + "7+6+0=13;4+8+1=13;": ["3+5+1=9;\\boxed{933}"],
        p.prompt + "7+6+0=13;4+8+1=13;3+5+1=9;": ["\\boxed{933}", "\\boxed{933}", "\\boxed{932}", "\\boxed{933}"],
        p.prompt + "7+6+0=13;4+8+0=12;": ["3+5+1=9;\\boxed{923}"],
        p.prompt + "7+6+0=13;4+8+0=12;3+5+1=9;": ["\\boxed{923}"],
    }
    engine = ScriptedEngine(script)
    report = label_steps(engine, REWARDS["addition"], [p], samples=2, rollouts=4, delimiter=";", max_tokens=48)
    right, dropped = report.labeled
    assert right.soft == [0.75, 1.0, 0.75, 1.0] and right.hard == [1.0, 1.0, 1.0, 1.0] and right.reward == 1.0
    # the first step is right: 3 of 4 continuations of it still reach 933; the dropped carry's steps cannot
    assert dropped.soft == [0.75, 0.0, 0.0, 0.0] and dropped.hard == [1.0, 0.0, 0.0, 0.0] and dropped.reward == 0.0
    assert (right.rollouts, dropped.rollouts, report.rollouts, report.no_steps) == (12, 12, 24, 0)
    assert engine.calls[1][1] == 4 and len(engine.calls[1][0]) == 6  # one call for every prefix, 4 rollouts each
    # the hard labels against the exact truth: the label noise this task lets us measure
    truth = [addition_steps_correct(p.prompt, lab.steps) for lab in report.labeled]
    assert truth == [[True] * 4, [True, False, False, False]]


def test_a_completion_without_a_delimiter_is_counted_not_scored():
    p = make_problem(12, 34)
    report = label_steps(ScriptedEngine({p.prompt: ["\\boxed{46}"]}), REWARDS["addition"], [p], 3, 2, ";", 48)
    assert (report.labeled, report.no_steps, report.rollouts) == ([], 3, 0)


@pytest.mark.slow
def test_labels_through_the_real_engine(engine, tiny_model_dir):
    """The shared vLLM engine (the tiny model's own weights): every completion is split, every
    step but the last labelled by `rollouts` continuations, and the counts add up."""
    from tests.helpers import serve_model_on_disk

    serve_model_on_disk(engine, tiny_model_dir[0])
    problems = [make_problem(123, 456), make_problem(908, 76)]
    report = label_steps(engine, REWARDS["addition"], problems, samples=3, rollouts=2, delimiter="+", max_tokens=24, seed=5)
    assert report.no_steps + len(report.labeled) == 6
    assert report.rollouts == sum(lab.rollouts for lab in report.labeled)
    for lab in report.labeled:
        assert "".join(lab.steps) == lab.completion and len(lab.soft) == len(lab.hard) == len(lab.steps)
        assert lab.rollouts == 2 * (len(lab.steps) - 1)
        assert all(s in (0.0, 0.5, 1.0) for s in lab.soft) and [h > 0 for h in lab.hard] == [s > 0 for s in lab.soft]


def test_auc_by_hand():
    from rlreason.prm import auc

    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75  # 3 of the 4 (right, wrong) pairs ordered
    assert auc([1, 1, 0, 0], [True, False, True, False]) == 0.5  # ties count half
    assert auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auc([0.3], [True]) != auc([0.3], [True])  # NaN: one class only


def test_step_positions_point_at_each_steps_last_token(tiny_model_dir):
    from transformers import AutoTokenizer

    from rlreason.prm import step_positions

    tok = AutoTokenizer.from_pretrained(tiny_model_dir[0])
    steps = split_steps(RIGHT, ";")
    ids, positions = step_positions(tok, "347+586>", steps)
    assert tok.decode(ids) == "347+586>" + RIGHT
    assert [tok.decode([ids[i]]) for i in positions] == [";", ";", ";", "}"]
    assert positions == [8 + 9 - 1, 8 + 18 - 1, 8 + 26 - 1, len(ids) - 1]  # one token a character here


def test_a_prm_learns_step_labels(tiny_model_dir):
    """Trained on labels that call every step after a dropped carry wrong, the PRM scores the
    right scratchpad's steps above the dropped one's later steps (AUC 1 on these steps)."""
    from rlreason.prm import StepLabels, auc, prm_step_scores, train_prm

    right, dropped = split_steps(RIGHT, ";"), split_steps(DROPPED, ";")
    labels = [StepLabels("347+586>", "933", RIGHT, right, [1.0] * 4, [1.0] * 4, 1.0, 12),
              StepLabels("347+586>", "933", DROPPED, dropped, [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], 0.0, 12)] * 16
    model, tok, losses = train_prm(str(tiny_model_dir[0]), labels, epochs=8, lr=3e-3, batch_size=8)
    assert losses[-1] < losses[0]
    scores = prm_step_scores(model, tok, ["347+586>"] * 2, [right, dropped])
    truth = addition_steps_correct("347+586>", right) + addition_steps_correct("347+586>", dropped)
    assert auc(scores[0] + scores[1], truth) == 1.0
