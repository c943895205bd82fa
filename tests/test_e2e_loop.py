"""End-to-end: the real loop with real Ray actors, a real vLLM engine, a real reward, real syncs."""

import json
import math
from pathlib import Path

import pytest
import torch

from rlreason.config import load_config

pytestmark = pytest.mark.slow

IDS = [6, 7, 10, 75, 8, 11, 9, 84, 10, 75, 9, 75, 3, 83, 4, 6, 81]  # fixed tokens: "347+586>7+6+0=13;4+"


def max_diff(a, b):
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def workers(tiny_model_dir, tmp_path_factory):
    import ray

    from rlreason.cluster.ray_workers import RayEngine, RayLearner, connect

    path, model_cfg = tiny_model_dir
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config(
        None,
        [
            f"model.cache_dir={model_cfg.cache_dir}",
            f"run_dir={run_dir}",
            "steps=3",
            "warm_start.enabled=false",
            "reward=tests.plugins:parity_reward",  # mixed groups even for an untrained model
            "rollout.prompts_per_step=4",
            "rollout.group_size=4",
            "eval.size=16",
            "eval.every=2",
            "optim.lr=1e-2",
            "optim.warmup_steps=1",
            "rollout.kv_cache_gib=1",
            "ray.num_cpus=4",  # logical CPUs: room for a second learner or engine in later tests
            "eval.datasets=[math500, humaneval]",  # real data sets evaluated during training too
            "eval.dataset_size=4",
        ],
    )
    connect(cfg)
    learner, engine = RayLearner(cfg, str(path)), RayEngine(cfg, str(path))
    yield cfg, learner, engine, run_dir
    ray.shutdown()


def test_streamed_generation_is_the_same_samples(workers):
    """generate_stream (a Ray streaming generator over vLLM's engine steps) yields every group,
    each once, equal to generate's with the same seed."""
    _, _, engine, _ = workers
    prompts = ["347+586>", "12+34>", "999+1>", "5+5>", "100+200>"]
    whole = engine.generate(prompts, 3, 1.0, 1.0, 16, seed=11)
    got = {}
    for chunk in engine.generate_stream(prompts, 3, 1.0, 1.0, 16, seed=11):
        for i, group in chunk:
            assert i not in got
            got[i] = group
    assert sorted(got) == list(range(len(prompts)))
    assert [[(s.completion_ids, s.logprobs) for s in got[i]] for i in range(len(prompts))] == [
        [(s.completion_ids, s.logprobs) for s in g] for g in whole
    ]


def _vllm_detokenized(engine, prompts, n, max_tokens, seed):
    """Run inside the engine actor: the same requests with vLLM's own detokenizer on."""
    params = engine._params(len(prompts), n, 1.0, 1.0, max_tokens, seed)
    for p in params:
        p.detokenize = True
    return [[c.text for c in out.outputs] for out in engine.llm.generate(prompts, params, use_tqdm=False)]


def test_texts_are_what_vllms_detokenizer_gives(workers):
    """The engine turns vLLM's detokenizer off and decodes each completion once itself: the
    texts must equal vLLM's own, for completions that end in EOS and ones cut at max_tokens."""
    import ray

    _, _, engine, _ = workers
    prompts = ["347+586>", "12+34>", "999+1>", "7+8>"]
    groups = engine.generate(prompts, 4, 1.0, 1.0, 24, seed=5)
    assert {s.finish_reason for g in groups for s in g} == {"stop", "length"}  # both kinds are checked
    theirs = ray.get(engine.actor.__ray_call__.remote(_vllm_detokenized, prompts, 4, 24, 5))
    assert [[s.text for s in g] for g in groups] == theirs
    assert all(s.text for g in groups for s in g)


def test_sync_makes_engine_fresh(workers):
    """After a sync, vLLM's fp32 logprobs for fixed tokens equal the learner's within 1e-4."""
    cfg, learner, engine, _ = workers
    assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4

    # an update on a batch sampled by the engine moves the learner away from the engine ...
    from rlreason.learner.batch import make_batch

    groups = engine.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, seed=0)
    assert [len(g) for g in groups] == [4, 4]
    assert all(len(s.logprobs) == len(s.completion_ids) > 0 for g in groups for s in g)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])
    stats = learner.update(make_batch(groups, adv, pad_id=0), 1.0)
    assert math.isfinite(stats.loss)
    assert stats.mismatch_logprob_diff < 1e-4  # the engine sampled from the learner's exact policy
    assert stats.mismatch_logprob_diff_max < 1e-3 and abs(stats.is_ratio_max - 1) < 1e-3 and stats.mismatch_kl < 1e-6
    stale = max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS))
    assert stale > 1e-3  # so the check below can fail

    # ... and the sync brings it back, in place, in the running engine
    assert engine.load_weights(learner.weights(), version=7) == 7
    assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4
    assert engine.generate(["1+2>"], 1, 1.0, 1.0, 4, seed=0)[0][0].version == 7


def _engine_state(engine):
    """Run inside an engine actor: the vLLM model's parameters (vLLM's own names), on CPU."""
    return engine.llm.apply_model(lambda m: {k: v.detach().to("cpu", copy=True) for k, v in m.named_parameters()})[0]


def held_weight_dtypes(state) -> set:
    """The dtypes of the weight matrices and vectors an engine still holds. vLLM-CPU repacks bf16
    linear weights for oneDNN on CPUs with AVX512-BF16 (an empty tensor is left in the
    parameter), and on CPUs with AMX it also keeps the qkv bias in float32 for that kernel."""
    return {v.dtype for k, v in state.items() if k.endswith(".weight") and v.numel()}


def test_bf16_engine_beside_an_fp32_learner(workers, tiny_model_dir):
    """rollout.dtype=bfloat16 with model.dtype float32 (the GPU recipes' layout): the engine
    holds bf16 weights, and a sync casts the learner's fp32 weights into them, exactly."""
    import copy

    import ray

    from rlreason.cluster.ray_workers import RayEngine
    from rlreason.learner.batch import make_batch

    cfg, learner, _, _ = workers
    bf = copy.deepcopy(cfg)
    bf.rollout.dtype = "bfloat16"
    assert bf.engine_dtype == "bfloat16" and cfg.engine_dtype == "float32"
    engine = RayEngine(bf, str(tiny_model_dir[0]))
    try:
        names = ["model.embed_tokens.weight", "model.norm.weight"]  # same names in vLLM and HF
        state = ray.get(engine.actor.__ray_call__.remote(_engine_state))
        assert held_weight_dtypes(state) == {torch.bfloat16}
        groups = engine.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, seed=0)
        learner.update(make_batch(groups, torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]), pad_id=0), 1.0)
        fp32 = ray.get(learner.weights())  # an ObjectRef without a transport
        rows = {k: fp32[k].shape[0] for k in names}  # vLLM pads the vocabulary to a multiple of 64 rows
        assert not all(torch.equal(state[k][: rows[k]], fp32[k].to(torch.bfloat16)) for k in names)  # the update moved them
        engine.load_weights(fp32, version=1)
        state = ray.get(engine.actor.__ray_call__.remote(_engine_state))
        for k in names:
            assert state[k].dtype == torch.bfloat16 and torch.equal(state[k][: rows[k]], fp32[k].to(torch.bfloat16))
        # bf16 rounding: close to the learner's fp32 logprobs, not equal
        assert 0 < max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 0.1
    finally:
        ray.kill(engine.actor)


def _compiled(engine):
    """Run inside an engine actor: whether vLLM built the model with torch.compile."""
    return not engine.llm.llm_engine.vllm_config.model_config.enforce_eager


def test_compiled_engine_on_cpu_samples_and_syncs_like_an_eager_one(workers, tiny_model_dir):
    """rollout.enforce_eager=false on CPU: vLLM compiles the model with inductor. A sync must
    still reach the compiled graph (weights are not frozen into it): the fp32 logprobs move
    away from the learner's after an update and back to within 1e-4 after the sync; and the
    compiled engine samples what the eager one does for the same seeds."""
    import copy

    import ray

    from rlreason.cluster.ray_workers import RayEngine
    from rlreason.learner.batch import make_batch

    cfg, learner, eager, _ = workers
    compiled_cfg = copy.deepcopy(cfg)
    compiled_cfg.rollout.enforce_eager = False
    engine = RayEngine(compiled_cfg, str(tiny_model_dir[0]))
    try:
        assert ray.get(engine.actor.__ray_call__.remote(_compiled)) and not ray.get(eager.actor.__ray_call__.remote(_compiled))
        version = 11
        for _ in range(2):  # 2 updates: the first sync may find the engine's start weights current
            groups = engine.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, seed=0)
            learner.update(make_batch(groups, torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]), pad_id=0), 1.0)
            assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) > 1e-3
            weights = learner.weights()
            engine.load_weights(weights, version=version)
            eager.load_weights(weights, version=version)
            assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4
            version += 1
        prompts = ["347+586>", "12+34>", "999+1>"]
        ours, theirs = engine.generate(prompts, 4, 1.0, 1.0, 16, seed=3), eager.generate(prompts, 4, 1.0, 1.0, 16, seed=3)
        # the same tokens in the same order; the logprobs within fp32 rounding of the two kernels
        assert [[s.completion_ids for s in g] for g in ours] == [[s.completion_ids for s in g] for g in theirs]
        assert max(max_diff(a.logprobs, b.logprobs) for g, h in zip(ours, theirs) for a, b in zip(g, h)) < 1e-4
    finally:
        ray.kill(engine.actor)


ALGO_RECIPES = [
    "addition_grpo", "addition_dr_grpo", "addition_rloo", "addition_reinforce_pp", "addition_gspo",
    "addition_dapo", "addition_expert_iteration", "addition_ppo",
]


@pytest.mark.parametrize("recipe", ALGO_RECIPES)
def test_algorithm_recipes_run_through_the_real_loop(workers, tiny_model_dir, tmp_path, recipe):
    """Each algorithm recipe: 2 real steps (vLLM samples, reward, its advantage and loss, sync)."""
    import ray

    from rlreason.cluster.ray_workers import RayLearner
    from rlreason.loop import run

    _, _, engine, _ = workers
    path, model_cfg = tiny_model_dir
    cfg = load_config(
        Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml",
        [f"model.cache_dir={model_cfg.cache_dir}", f"run_dir={tmp_path}", "steps=2", "warm_start.enabled=false",
         "reward=tests.plugins:parity_reward", "rollout.prompts_per_step=4", "rollout.group_size=4", "eval.size=8",
         "optim.lr=1e-2", "optim.warmup_steps=1"],
    )
    learner = RayLearner(cfg, str(path))
    try:
        before = learner.sequence_logprobs(IDS)
        run(cfg, engine, learner, tmp_path)
        after = learner.sequence_logprobs(IDS)
    finally:
        ray.kill(learner.actor)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows[1:])
    assert max_diff(before, after) > 1e-4  # the update moved the policy
    assert max_diff(engine.prompt_logprobs(IDS), after) < 1e-4  # and the engine serves it


def test_code_recipe_runs_through_the_sandbox(workers, tiny_model_dir, tmp_path):
    """The functions task with the sandboxed code reward, through the real loop: warm start,
    2 RL steps, every completion and every held-out answer run in bubblewrap, no infrastructure
    error. (After so short a warm start the model writes no passing function yet.)"""
    import ray

    from rlreason.cluster.ray_workers import RayLearner
    from rlreason.loop import run
    from rlreason.rewards import code

    _, _, engine, _ = workers
    path, model_cfg = tiny_model_dir
    cfg = load_config(
        Path(__file__).parents[1] / "recipes" / "functions_code_grpo.yaml",
        [f"model.cache_dir={model_cfg.cache_dir}", f"run_dir={tmp_path}", "steps=2", "warm_start.steps=20",
         "rollout.prompts_per_step=4", "rollout.group_size=4", "eval.size=8"],
    )
    learner = RayLearner(cfg, str(path))
    try:
        run(cfg, engine, learner, tmp_path)
    finally:
        ray.kill(learner.actor)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["reward/errors"] == 0 for r in rows[1:]) and all(r["eval/reward_errors"] == 0 for r in (rows[0], rows[2]))
    counts = code._default.counts  # the code reward the loop configured at start-up: every sample ran in the sandbox
    assert counts["pass"] + counts["fail"] + counts["timeout"] == 2 * 16 + 2 * 8 and counts["error"] == 0


def test_loop_runs_learns_syncs_and_writes_metrics(workers, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rlreason.cluster.ray_workers import RayEngine
    from rlreason.loop import run

    cfg, learner, engine, run_dir = workers
    before = learner.sequence_logprobs(IDS)
    result = run(cfg, engine, learner, run_dir)
    after = learner.sequence_logprobs(IDS)

    assert max_diff(before, after) > 1e-3  # the weights changed
    assert max_diff(engine.prompt_logprobs(IDS), after) < 1e-4  # the engine serves them

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for r in rows[1:]:
        assert math.isfinite(r["loss"])
        assert 0.0 <= r["reward/mean"] <= 1.0
        assert {"timing/rollout", "timing/update", "timing/sync", "timing/step"} <= set(r)
        assert r["timing/sync_wait"] == 0.0  # synchronous: no generation in flight to wait for
        assert r["policy_version"] == r["step"]
    assert ["eval/accuracy" in r for r in rows] == [True, False, True, True]
    for r in (rows[0], rows[2], rows[3]):  # MATH-500 and HumanEval (sandboxed) at every evaluation
        assert 0.0 <= r["eval/math500/accuracy"] <= 1.0 and 0.0 <= r["eval/humaneval/accuracy"] <= 1.0
        assert r["eval/math500/reward_errors"] == 0 and r["eval/humaneval/reward_errors"] == 0
    assert result["eval/accuracy"] == rows[-1]["eval/accuracy"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "progress.png").stat().st_size > 1000

    # the final policy is plain HF format: transformers and vLLM both load it, with the same logprobs
    final = run_dir / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0, :-1].log_softmax(-1)
    hf = logits.gather(-1, torch.tensor(IDS[1:])[:, None])[:, 0].tolist()
    assert max_diff(hf, after) < 1e-5
    import ray

    ray.kill(engine.actor)  # free its CPU slot for a second engine
    fresh_engine = RayEngine(cfg, str(final))
    assert max_diff(fresh_engine.prompt_logprobs(IDS), after) < 1e-4

