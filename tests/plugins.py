"""Reward plug-ins used by tests through dotted paths ('tests.plugins:name')."""


def parity_reward(prompt: str, completion: str, answer: str) -> float:
    """1 when the completion has an even number of characters: mixed groups even for an untrained model."""
    return float(len(completion) % 2 == 0)


def raising_reward(prompt: str, completion: str, answer: str) -> float:
    raise KeyError("missing field 'tests'")


def always_right(prompt: str, completion: str, answer: str) -> float:
    """1 for every completion: a curriculum's frontier moves on schedule (its pass rate is 1)."""
    return 1.0
