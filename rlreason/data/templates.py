"""Prompt templates: a question (with the data set's instruction) -> the text the model sees.

    TEMPLATES[name](question, tokenizer) -> str

chat     the model's own chat template (tokenizer.apply_chat_template, one user turn, with the
         generation prompt): for instruct / chat models.
r1_zero  DeepSeek-R1-Zero's plain-text conversation for base models: the assistant thinks inside
         <think>...</think>, then gives the final answer in \\boxed{} (what the math reward reads).
         The prompt ends with '<think>' so the model starts reasoning at once.
plain    the question, then 'Answer:' on a new line: a base model's few-words completion.
raw      the question unchanged: code completion (HumanEval's prompt is the function head) and
         the built-in tasks, whose prompts are what the model was trained on.

Only 'chat' needs a tokenizer; the others ignore it.
"""

from __future__ import annotations

from typing import Callable

from rlreason.errors import DataError

R1_ZERO = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think>, and the final answer is written "
    "after it within \\boxed{{}}, i.e., <think> reasoning process here </think> The answer is \\boxed{{answer}}.\n"
    "User: {question}\nAssistant: <think>"
)


def chat_template(question: str, tokenizer) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError("template 'chat' needs a tokenizer with a chat template; use 'r1_zero' or 'plain' for a base model")
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)


def r1_zero_template(question: str, tokenizer=None) -> str:
    return R1_ZERO.format(question=question)


def plain_template(question: str, tokenizer=None) -> str:
    return f"{question}\nAnswer:"


def raw_template(question: str, tokenizer=None) -> str:
    return question


TEMPLATES: dict[str, Callable[[str, object], str]] = {
    "chat": chat_template,
    "r1_zero": r1_zero_template,
    "plain": plain_template,
    "raw": raw_template,
}


def render(template: str, question: str, instruction: str, tokenizer=None) -> str:
    """The prompt for one question. The data set's instruction ('put your final answer within
    \\boxed{}') goes after the question for 'chat' and 'plain'; 'r1_zero' states the format
    itself and 'raw' adds nothing."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; use one of {sorted(TEMPLATES)}")
    if template in ("chat", "plain"):
        question = question + instruction
    return TEMPLATES[template](question, tokenizer)


def fitting_prompts(spec, problems: list, tokenizer, budget: int, limit: int | None = None) -> tuple[list, list[str], int]:
    """Render every problem with the data set's template and keep those whose prompt fits in
    `budget` tokens (max_model_len - max_tokens), then the first `limit`. Returns (problems,
    prompts, how many were left out as too long); no fitting problem is a ValueError."""
    import logging

    prompts = [render(spec.template, p.prompt, spec.instruction, tokenizer) for p in problems]
    keep = [i for i, text in enumerate(prompts) if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget]
    dropped = len(problems) - len(keep)
    if dropped:
        logging.getLogger(__name__).warning(
            "%s: %d of %d prompts are longer than max_model_len - max_tokens = %d tokens: left out", spec.label, dropped, len(problems), budget
        )
    keep = keep[:limit] if limit is not None else keep
    if not keep:
        raise DataError(f"no problem of {spec.label} fits in max_model_len - max_tokens = {budget} tokens")
    return [problems[i] for i in keep], [prompts[i] for i in keep], dropped
