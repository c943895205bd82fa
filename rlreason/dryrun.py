"""`rlreason train RECIPE --dry-run`: check a recipe without downloading weights or starting work.

Each check is ok, FAIL (the run would stop) or unchecked (it needs something this machine
does not have, e.g. the hub; the reason is given):

    config     the recipe and overrides fit the config tree (done before this module runs)
    reward     the reward names resolve; a code reward finds its sandbox
    model      where it is (rlreason.models.resolve_model: a local path that is not there, or a
               repository the hub does not have, is a FAIL; a hub it cannot ask, unchecked);
               config.json and tokenizer (no weights): parameter count on the meta device,
               context length against rollout.max_model_len, the chat template when used
    data       the training rows load and map (every row: a missing field names its row),
               the template renders, prompts fit max_model_len - max_tokens, held-out size
    eval sets  the same for each eval.datasets entry
    placement  the GPUs and CPUs the actors ask for, against the Ray cluster when one is named
               (RAY_ADDRESS / ray.address), and a memory estimate for the learner

Exit status 0 when nothing failed, 1 otherwise (the last line names each FAIL and its reason).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlreason.config import Config

OK, FAIL, UNCHECKED = "ok", "FAIL", "unchecked"


@dataclass
class Check:
    name: str
    status: str
    detail: str


def _model(cfg: Config, checks: list[Check]):
    """(tokenizer or None, parameter count or None)."""
    from transformers import AutoConfig, AutoTokenizer

    from rlreason.errors import HubUnreachable, NotFound
    from rlreason.models import resolve_model

    try:
        path = resolve_model(cfg.model)  # a local path, the HF cache, 'tiny', the hub: says which failed
        mcfg = AutoConfig.from_pretrained(path)
    except HubUnreachable as e:  # nothing this machine can check
        checks.append(Check("model", UNCHECKED, str(e)))
        return None, None
    except NotFound as e:  # a missing directory, a repository the hub does not have
        checks.append(Check("model", FAIL, str(e)))
        return None, None
    except Exception as e:  # noqa: BLE001  a config.json transformers cannot read: report, do not crash
        checks.append(Check("model", FAIL, f"{cfg.model.path}: config.json not readable ({type(e).__name__}: {str(e).splitlines()[0][:160]})"))
        return None, None
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: no memory, no weights
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(mcfg).parameters())
    ctx = getattr(mcfg, "max_position_embeddings", None)
    status, detail = OK, f"{cfg.model.path}: {mcfg.model_type}, {n_params / 1e6:.1f}M parameters, context {ctx}"
    if ctx is not None and cfg.rollout.max_model_len > ctx:
        status, detail = FAIL, f"{detail}: rollout.max_model_len={cfg.rollout.max_model_len} exceeds it"
    checks.append(Check("model", status, detail))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        checks.append(Check("tokenizer", UNCHECKED, f"not reachable ({type(e).__name__})"))
        return None, n_params
    checks.append(Check("tokenizer", OK, f"{type(tokenizer).__name__}, vocabulary {len(tokenizer)}, chat template: {'yes' if tokenizer.chat_template else 'no'}"))
    return tokenizer, n_params


def _data(name: str, spec, tokenizer, budget: int, checks: list[Check], need: int = 0, limit: int | None = None) -> None:
    """Load and map every row; render and length-filter when the tokenizer is at hand."""
    from rlreason.data.datasets import load_problems, resolved_source
    from rlreason.data.templates import fitting_prompts, render
    from rlreason.errors import HubUnreachable, UserError

    try:
        problems = load_problems(spec)
    except HubUnreachable as e:  # not local, not cached, and no hub to ask
        checks.append(Check(name, UNCHECKED, str(e)))
        return
    except UserError as e:  # a missing file, a row that lacks a field (named), a file that does not parse
        checks.append(Check(name, FAIL, str(e)))
        return
    except Exception as e:  # noqa: BLE001  anything else the reader raises: report, do not crash
        checks.append(Check(name, FAIL, f"{resolved_source(spec)}: {type(e).__name__}: {str(e).splitlines()[0][:240]}"))
        return
    checks.append(Check(name, OK, f"{resolved_source(spec)}: {len(problems)} rows mapped (question, {'tests' if spec.tests else 'gold answer'})"))
    if tokenizer is None:
        if spec.template == "chat":
            checks.append(Check(f"{name} prompts", UNCHECKED, "template 'chat' and the length filter need the tokenizer"))
        else:
            example = render(spec.template, problems[0].prompt, spec.instruction)
            checks.append(Check(f"{name} prompts", UNCHECKED, f"template {spec.template!r} renders; the length filter needs the tokenizer; first prompt ends {example[-100:]!r}"))
        return
    try:
        kept, prompts, dropped = fitting_prompts(spec, problems, tokenizer, budget, limit)
    except ValueError as e:
        checks.append(Check(f"{name} prompts", FAIL, str(e)))
        return
    status, detail = OK, f"{len(kept)} fit in {budget} prompt tokens ({dropped} too long), template {spec.template!r}"
    if need and len(kept) <= need:
        status, detail = FAIL, f"{detail}: task.heldout_size={need} leaves nothing to train on"
    checks.append(Check(f"{name} prompts", status, detail))


def _placement(cfg: Config, n_params: int | None, checks: list[Check]) -> None:
    from rlreason.config import ConfigError

    r = cfg.ray
    try:
        r.check()
    except ConfigError as e:
        checks.append(Check("placement", FAIL, str(e)))
        return
    workers, ranks = r.rollout_workers, r.learner_workers
    gpus, cpus = r.learner_gpus * ranks + r.rollout_gpus * workers, r.learner_cpus * ranks + r.rollout_cpus * workers
    if r.placement == "colocated":  # one actor: the larger of the two requests
        gpus, cpus = max(r.learner_gpus, r.rollout_gpus), max(r.learner_cpus, r.rollout_cpus)
    detail = (f"{r.placement}: {ranks} learner rank(s) x {r.learner_gpus:g} GPU / {r.learner_cpus:g} CPU, {workers} rollout "
              f"worker(s) x {r.rollout_gpus:g} GPU / {r.rollout_cpus:g} CPU: {gpus:g} GPUs, {cpus:g} CPUs; weights by {r.transport}")
    if n_params:
        # the learner holds weights, gradients and AdamW's two moments, all in model.dtype
        width = 2 if cfg.model.dtype in ("bfloat16", "float16") else 4
        gib = n_params * 4 * width / 2**30
        detail += f"; learner weights + grads + AdamW states ~{gib:.1f} GiB before activations"
    address = r.address or os.environ.get("RAY_ADDRESS")
    if not address:
        checks.append(Check("placement", OK if gpus == 0 else UNCHECKED, detail + ("" if gpus == 0 else "; no cluster named (RAY_ADDRESS / ray.address) to check the GPUs against")))
        return
    import ray

    try:
        ray.init(address=address, log_to_driver=False)
        have = ray.cluster_resources()
    except Exception as e:  # noqa: BLE001
        checks.append(Check("placement", UNCHECKED, f"{detail}; cluster {address} not reachable: {e}"))
        return
    finally:
        if ray.is_initialized():
            ray.shutdown()
    short = [f"{k}: need {v:g}, cluster has {have.get(k, 0):g}" for k, v in (("GPU", gpus), ("CPU", cpus)) if v > have.get(k, 0)]
    checks.append(Check("placement", FAIL if short else OK, f"{detail}; " + ("; ".join(short) if short else f"cluster {address} has {have.get('GPU', 0):g} GPUs, {have.get('CPU', 0):g} CPUs")))


def dry_run(cfg: Config) -> list[Check]:
    from rlreason.data.dataset_task import training_spec
    from rlreason.data.datasets import get_spec
    from rlreason.rewards import prepare_rewards, resolve_reward, reward_names

    checks = [Check("config", OK, f"{cfg.name}: {cfg.steps} steps, {cfg.rollout.prompts_per_step} prompts x {cfg.rollout.group_size} samples, {cfg.algo.advantage} / {cfg.algo.policy_loss}")]
    try:
        resolve_reward(cfg.reward)
        prepare_rewards(cfg.reward, cfg.scoring.unsafe_code)
        checks.append(Check("reward", OK, f"{cfg.reward} (eval/accuracy counts {cfg.eval.reward or reward_names(cfg.reward)[0]})"))
    except Exception as e:  # noqa: BLE001  e.g. no sandbox for a code reward
        checks.append(Check("reward", FAIL, f"{cfg.reward}: {e}"))
    tokenizer, n_params = _model(cfg, checks)
    budget = cfg.rollout.max_model_len - cfg.rollout.max_tokens
    if cfg.task.name == "dataset":
        _data("data", training_spec(cfg.task.dataset), tokenizer, budget, checks, need=cfg.task.heldout_size)
    else:
        checks.append(Check("data", OK, f"built-in generated task {cfg.task.name!r}"))
    for name in cfg.eval.datasets:
        _data(f"eval set {name}", get_spec(name, template=cfg.eval.template or None), tokenizer, budget, checks, limit=cfg.eval.dataset_size)
    _placement(cfg, n_params, checks)
    return checks


def prm_checks(cfg: Config) -> list[Check]:
    """`rlreason prm --dry-run`'s own checks: the policy whose rollouts are labelled (and the PRM's
    base), the steps and the label budget, the held-out problems the AUC is measured on."""
    from rlreason.errors import HubUnreachable, NotFound
    from rlreason.evaluate import resolve_eval_model
    from rlreason.prm_run import step_delimiter

    p, checks = cfg.prm, []
    for key, value in (("prm.policy", p.policy), ("prm.base", p.base)):
        if not value:
            continue
        if value == "warm_start" and key == "prm.policy":
            status = OK if cfg.warm_start.enabled else FAIL
            checks.append(Check(key, status, "the recipe's warm-started policy (from the warm-start cache, or run first)"
                                + ("" if status == OK else ": warm_start.enabled is false; give prm.policy=PATH")))
            continue
        try:
            checks.append(Check(key, OK, resolve_eval_model(value, cfg.rollout.max_model_len)))
        except HubUnreachable as e:
            checks.append(Check(key, UNCHECKED, str(e)))
        except NotFound as e:
            checks.append(Check(key, FAIL, str(e)))
    labels = p.problems * p.samples
    checks.append(Check("prm labels", OK, f"steps end at {step_delimiter(cfg)!r}; {p.problems} training problems x {p.samples} completions, "
                                          f"{p.rollouts} continuations a step (a completion of S steps costs {p.rollouts} x (S - 1)); "
                                          f"{labels} completions to label"))
    held = cfg.eval.size
    status = OK if p.heldout_problems <= held else FAIL
    checks.append(Check("prm held-out", status, f"{p.heldout_problems} held-out problems for the step AUC" +
                        ("" if status == OK else f": more than the {held} the run holds out (eval.size); lower prm.heldout_problems")))
    return checks


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.status:>9}  {c.name:<{width}}  {c.detail}" for c in checks)
