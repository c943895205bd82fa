"""Sequential revisions (Snell et al. 2024, section 6): a policy that sees its earlier attempts
and writes a new one, trained on the policy's own wrong-then-right samples.

    revision_prompt(prompt, attempts, separator)       the text the model continues
    revision_pairs(samples, max_previous, rng)          SFT pairs from the policy's own samples

The text: each earlier attempt after the prompt and followed by a separator, then the prompt
again (`revision_prompt`). The data (`revision_pairs`): for every problem with a right sample, each wrong sample (with up
to max_previous - 1 wrong ones before it) is shown before a right one, and each right one before
itself, so that a right attempt is kept (Snell et al. show wrong ones only; a chain here goes on
after a right attempt, so it must see right ones too). Every sample the policy drew is also kept
as a first attempt (nothing shown before it, right or wrong as it was drawn), so that the
revision model's first attempt stays the policy's own and a gain is the revisions', not a better
first attempt. Trained with the learner's supervised step
(the warm start's: rlreason.learner.policy.Learner.warm_start) from the policy's weights
(rlreason.prm_run, prm.revisions), saved with revision.json naming the separator.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# What follows an attempt before the next: one character for the addition scratchpad (the tiny
# model's vocabulary has it), a sentence for math text.
SEPARATORS = {"addition": "|", "math": "\n\nThat answer may be wrong. A new solution:\n\n"}


def revision_prompt(prompt: str, attempts: list[str], separator: str) -> str:
    """Each earlier attempt after its prompt, each followed by the separator, then the prompt
    again: the new attempt starts where a first one would (a small model finds the problem's
    digits at the same distance)."""
    return "".join(prompt + a + separator for a in attempts) + prompt


def revision_pairs(samples: list[tuple[str, list[str], list[bool]]], separator: str, max_previous: int,
                   rng: random.Random) -> tuple[list[tuple[str, str]], int]:
    """(prompt, completion) pairs from (prompt, sampled texts, whether each was right) per problem:
    - every sample as a first attempt (as drawn, right or wrong);
    - for a problem with right and wrong samples, each wrong one (after up to max_previous - 1
      wrong ones before it, in sampled order) followed by a right one drawn by `rng`;
    - each right one followed by itself: a right attempt is kept.
    Returns the pairs and how many of them show earlier attempts."""
    pairs, revisions = [], 0
    for prompt, texts, right in samples:
        pairs += [(prompt, t) for t in texts]
        good = [t for t, ok in zip(texts, right) if ok]
        bad = [t for t, ok in zip(texts, right) if not ok]
        if not good:
            continue
        for j in range(len(bad)):
            pairs.append((revision_prompt(prompt, bad[max(0, j + 1 - max_previous) : j + 1], separator), rng.choice(good)))
        pairs += [(revision_prompt(prompt, [g], separator), g) for g in good]
        revisions += len(bad) + len(good)
    return pairs, revisions


def revision_meta(path: str) -> dict:
    """A revision model's revision.json (separator, max_previous), or NotFound naming the model."""
    from rlreason.errors import NotFound

    meta = Path(path) / "revision.json"
    if not meta.is_file():
        raise NotFound(f"{path}: not a revision model (no revision.json); train one with `rlreason prm RECIPE prm.revisions=true`")
    return json.loads(meta.read_text())
