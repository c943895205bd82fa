"""Countdown reward (TinyZero's task): reach the target with + - * / using each number once.

    countdown(prompt, completion, answer) -> 1.0 | 0.0
    answer_format(prompt, completion, answer) -> 1.0 | 0.0

The answer is JSON: {"target": 24, "nums": [3, 4, 6]}. The equation is the last
<answer>...</answer> of the completion (only the text after </think> when there is one). It
scores 1.0 when it uses exactly the given numbers, each once, only + - * / and parentheses,
and evaluates to the target (within 1e-5). It is evaluated by walking its syntax tree, never
with eval(), and a huge power or a division by zero simply scores 0.

TinyZero's own score is 1.0 / 0.1 / 0 (correct / an equation that is wrong / no equation):
`countdown + 0.1*answer_format` gives 1.1 / 0.1 / 0, the same ordering with the same gaps.
Departures from TinyZero: it reads only the completion's last line; this reads the last
<answer> anywhere after the reasoning.
"""

from __future__ import annotations

import ast
import json
import operator
import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ALLOWED = re.compile(r"^[\d+\-*/().\s]+$")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_CHARS = 200  # 4 numbers and 3 operators need ~30; longer is not an answer


def extract_equation(completion: str) -> str | None:
    """The last <answer>...</answer> after the reasoning, stripped; None when there is none."""
    text = completion.rsplit("</think>", 1)[-1]
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError(f"not allowed in a countdown equation: {ast.dump(node)[:60]}")


def evaluate_equation(equation: str) -> float | None:
    """The value of an equation of integers, + - * / and parentheses; None if it is anything else
    or cannot be computed (division by zero)."""
    if len(equation) > MAX_CHARS or not _ALLOWED.match(equation):
        return None
    try:
        return float(_value(ast.parse(equation, mode="eval")))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _gold(answer: str) -> tuple[float, list[int]]:
    try:
        gold = json.loads(answer)
        return float(gold["target"]), sorted(int(n) for n in gold["nums"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"countdown answer must be JSON {{'target': N, 'nums': [...]}}, got {answer[:100]!r}") from None


def countdown_reward(prompt: str, completion: str, answer: str) -> float:
    target, nums = _gold(answer)
    equation = extract_equation(completion)
    if equation is None:
        return 0.0
    if sorted(int(n) for n in re.findall(r"\d+", equation)) != nums:
        return 0.0
    value = evaluate_equation(equation)
    return 1.0 if value is not None and abs(value - target) < 1e-5 else 0.0


def answer_format_reward(prompt: str, completion: str, answer: str) -> float:
    """1.0 when the completion ends its reasoning with an <answer> holding a computable equation."""
    equation = extract_equation(completion)
    return 1.0 if equation is not None and evaluate_equation(equation) is not None else 0.0
