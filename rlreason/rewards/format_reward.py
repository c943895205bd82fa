"""Format reward: a reasoning block, then an answer.

    think_format_reward(prompt, completion, answer) -> 1.0 | 0.0

1.0 iff the whole completion matches this pattern (DOTALL; T = any text without <think> or
</think> in it):

    \\A \\s* <think> T </think> T \\Z      with non-whitespace in both T

that is: optional leading whitespace, exactly one <think>...</think> block first, with something
in it, then a non-empty answer. Written with str.find rather than a regex so that a long
completion costs linear time (a backtracking regex for this is quadratic on a miss). The gold
answer is not read: combine this with a correctness reward (rlreason.rewards.combine).
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def think_format_reward(prompt: str, completion: str, answer) -> float:
    """1.0 when the completion is `<think>reasoning</think>answer` (see the module doc), else 0.0."""
    text = completion.lstrip()
    if not text.startswith(OPEN):
        return 0.0
    end = text.find(CLOSE)
    if end < 0:
        return 0.0
    think, rest = text[len(OPEN) : end], text[end + len(CLOSE) :]
    if OPEN in think or OPEN in rest or CLOSE in rest:
        return 0.0
    return 1.0 if think.strip() and rest.strip() else 0.0
