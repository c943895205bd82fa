"""End-to-end: the real loop with a real vLLM engine (a Ray actor), a real reward, real syncs.

The session's shared engine (conftest `engine`) serves every test here. The loop's own test runs
the split placement's parts: a Learner actor and the object-store sync, in buckets. The
algorithm recipes run through the in-process Learner and DirectSync (their subject is the
algorithm, not Ray); the engine dtypes and the compiled engine get engines of their own.
"""

import math

import pytest
import torch

from tests.helpers import ADV, IDS, SHORT_RUN, engine_state, held_weight_dtypes, make_config, max_diff, read_rows, serve_model_on_disk

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(engine, tiny_model_dir, tmp_path_factory):
    """The shared engine, a Learner actor (the split placement's) and the object-store sync
    between them, in buckets of 0.2 MiB (several per sync)."""
    from rlreason.cluster.placement import build_learner
    from rlreason.cluster.sync import ObjectStoreSync

    path, model_cfg = tiny_model_dir
    run_dir = tmp_path_factory.mktemp("run")
    cfg = make_config(
        model_cfg, f"run_dir={run_dir}", "steps=3", *SHORT_RUN, "eval.size=16", "eval.every=2", "ray.threads=1",
        "eval.datasets=[math500, humaneval]",  # real data sets evaluated during training too
        "eval.dataset_size=4",
    )
    learner = build_learner(cfg, str(path))
    sync = ObjectStoreSync(learner.actors, engine, bucket_mb=0.2)
    sync.push(version=0)  # the engine may hold another test's weights
    yield cfg, learner, engine, sync, run_dir
    learner.shutdown()


def test_streamed_generation_is_the_same_samples(engine):
    """generate_stream (a Ray streaming generator over vLLM's engine steps) yields every group,
    each once, equal to generate's with the same seed."""
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


def test_texts_are_what_vllms_detokenizer_gives(engine, tiny_model_dir):
    """The engine turns vLLM's detokenizer off and decodes each completion once itself: the
    texts must equal vLLM's own, for completions that end in EOS and ones cut at max_tokens."""
    import ray

    serve_model_on_disk(engine, tiny_model_dir[0])  # the untrained model: some completions stop, some run out
    prompts = ["347+586>", "12+34>", "999+1>", "7+8>"]
    groups = engine.generate(prompts, 4, 1.0, 1.0, 24, seed=5)
    assert {s.finish_reason for g in groups for s in g} == {"stop", "length"}  # both kinds are checked
    theirs = ray.get(engine.workers[0].__ray_call__.remote(_vllm_detokenized, prompts, 4, 24, 5))
    assert [[s.text for s in g] for g in groups] == theirs
    assert all(s.text for g in groups for s in g)


def test_object_store_sync_makes_the_engine_fresh(workers):
    """After a push, vLLM's fp32 logprobs for fixed tokens equal the learner's within 1e-4, and
    the engine serves the pushed version."""
    cfg, learner, engine, sync, _ = workers
    assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4

    # an update on a batch sampled by the engine moves the learner away from the engine ...
    from rlreason.learner.batch import make_batch

    groups = engine.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, seed=0)
    assert [len(g) for g in groups] == [4, 4]
    assert all(len(s.logprobs) == len(s.completion_ids) > 0 for g in groups for s in g)
    stats = learner.update(make_batch(groups, torch.tensor(ADV), pad_id=0), 1.0)
    assert math.isfinite(stats.loss)
    assert stats.mismatch_logprob_diff < 1e-4  # the engine sampled from the learner's exact policy
    assert stats.mismatch_logprob_diff_max < 1e-3 and abs(stats.is_ratio_max - 1) < 1e-3 and stats.mismatch_kl < 1e-6
    stale = max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS))
    assert stale > 1e-3  # so the check below can fail

    # ... and the push brings it back, in place, in the running engine, bucket by bucket
    assert len(sync.publish()) > 2  # the weights travel in several buckets
    pushed = sync.push(version=7)
    assert (pushed.version, pushed.wait_s) == (7, 0.0)
    assert max_diff(engine.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4
    assert engine.generate(["1+2>"], 1, 1.0, 1.0, 4, seed=0)[0][0].version == 7 and engine.served_versions() == [7]


def test_bf16_engine_beside_an_fp32_learner_by_object_store_and_by_gloo_broadcast(ray_cluster, tiny_model_dir):
    """rollout.dtype=bfloat16 with model.dtype float32 (the GPU recipes' layout), through both
    split transports into one bf16 engine: a push casts the learner's fp32 weights into the
    engine's bf16 ones, equal to fp32.to(bfloat16) bit for bit, by the object store's buckets
    (reload_weights) and by the gloo broadcast (vLLM's weight-transfer API, layer by layer).
    On a CPU with AVX512-BF16, vLLM-CPU repacks bf16 linear weights for oneDNN and leaves an empty
    tensor in the parameter: there the linear layer is checked through the logprobs, which must
    move from the stale weights' to within bf16 rounding of the learner's."""
    from rlreason.cluster.placement import build_learner, build_pool
    from rlreason.cluster.sync import CollectiveSync, ObjectStoreSync
    from rlreason.learner.batch import make_batch
    from tests.helpers import free

    path, model_cfg = tiny_model_dir
    cfg = make_config(model_cfg, "ray.threads=1", "ray.transport=gloo", "ray.sync_timeout_s=120", "rollout.dtype=bfloat16",
                      "optim.lr=1e-2", "optim.warmup_steps=1")
    assert (cfg.model.dtype, cfg.engine_dtype) == ("float32", "bfloat16")
    learner, pool = build_learner(cfg, str(path)), build_pool(cfg, str(path))
    try:
        names = ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.down_proj.weight"]  # same in vLLM
        syncs = {"object_store": ObjectStoreSync(learner.actors, pool, bucket_mb=0.2),
                 "gloo": CollectiveSync(learner.actors, pool, "gloo", cfg.ray.sync_timeout_s)}
        for version, (transport, sync) in enumerate(syncs.items(), start=1):
            groups = pool.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, 0)
            learner.update(make_batch(groups, torch.tensor(ADV), pad_id=0), 1.0)
            fp32 = learner.group.first("weights")
            before = ray_cluster.get(pool.workers[0].__ray_call__.remote(engine_state))
            assert held_weight_dtypes(before) == {torch.bfloat16} and fp32[names[0]].dtype == torch.float32
            rows = {k: fp32[k].shape[0] for k in names}  # vLLM pads the vocabulary rows
            assert not all(torch.equal(before[k][: rows[k]], fp32[k].to(torch.bfloat16)) for k in names)  # the update moved them
            stale = max_diff(pool.prompt_logprobs(IDS), learner.sequence_logprobs(IDS))
            assert sync.push(version).version == version
            after = ray_cluster.get(pool.workers[0].__ray_call__.remote(engine_state))
            held = [k for k in names if after[k].numel()]  # not repacked by vLLM-CPU (see above)
            assert held[:2] == names[:2]  # the embedding and the norm are always compared
            for k in held:
                assert after[k].dtype == torch.bfloat16 and torch.equal(after[k][: rows[k]], fp32[k].to(torch.bfloat16)), (transport, k)
            fresh = max_diff(pool.prompt_logprobs(IDS), learner.sequence_logprobs(IDS))
            print(f"{transport}: engine vs learner max |logprob diff|: {stale:.3g} before the push, {fresh:.3g} after")
            assert 0 < fresh < 0.1 and fresh < stale / 3, transport  # bf16 rounding after; the update's change before
            assert pool.served_versions() == [version]
    finally:
        free(pool, learner)


def _compiled(engine):
    """Run inside an engine actor: whether vLLM built the model with torch.compile."""
    return not engine.llm.llm_engine.vllm_config.model_config.enforce_eager


def test_compiled_engine_on_cpu_samples_and_syncs_like_an_eager_one(engine, tiny_model_dir):
    """rollout.enforce_eager=false on CPU: vLLM compiles the model with inductor. A sync must
    still reach the compiled graph (weights are not frozen into it): the fp32 logprobs move
    away from the learner's after an update and back to within 1e-4 after the push; and the
    compiled engine samples what the eager one does for the same seeds."""
    import ray

    from rlreason.cluster.placement import build_pool
    from rlreason.learner.batch import make_batch
    from rlreason.sync import DirectSync

    path, model_cfg = tiny_model_dir
    cfg = make_config(model_cfg, "ray.threads=1", "rollout.enforce_eager=false", "optim.lr=1e-2", "optim.warmup_steps=1")
    compiled = build_pool(cfg, str(path))
    try:
        assert ray.get(compiled.workers[0].__ray_call__.remote(_compiled)) and not ray.get(engine.workers[0].__ray_call__.remote(_compiled))
        learner = in_process_learner(cfg, path)
        to_compiled, to_eager = DirectSync(learner, compiled), DirectSync(learner, engine)
        for version in (11, 12):  # 2 updates: the first push may find the engine's start weights current
            groups = compiled.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, seed=0)
            learner.update(make_batch(groups, torch.tensor(ADV), pad_id=0), 1.0)
            assert max_diff(compiled.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) > 1e-3
            to_compiled.push(version), to_eager.push(version)
            assert max_diff(compiled.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)) < 1e-4
        prompts = ["347+586>", "12+34>", "999+1>"]
        ours, theirs = compiled.generate(prompts, 4, 1.0, 1.0, 16, seed=3), engine.generate(prompts, 4, 1.0, 1.0, 16, seed=3)
        # the same tokens in the same order; the logprobs within fp32 rounding of the two kernels
        assert [[s.completion_ids for s in g] for g in ours] == [[s.completion_ids for s in g] for g in theirs]
        assert max(max_diff(a.logprobs, b.logprobs) for g, h in zip(ours, theirs) for a, b in zip(g, h)) < 1e-4
    finally:
        compiled.shutdown()


ALGO_RECIPES = [
    "addition_grpo", "addition_dr_grpo", "addition_rloo", "addition_reinforce_pp", "addition_gspo",
    "addition_dapo", "addition_expert_iteration", "addition_ppo",
]


def in_process_learner(cfg, path):
    """The Learner in this process (the subject here is the algorithm, not Ray)."""
    from rlreason.config import learner_kwargs
    from rlreason.learner.policy import Learner

    return Learner(**learner_kwargs(cfg, str(path), threads=0))  # 0: torch's threads as they are


@pytest.mark.parametrize("recipe", ALGO_RECIPES)
def test_algorithm_recipes_run_through_the_real_loop(engine, tiny_model_dir, tmp_path, recipe):
    """Each algorithm recipe: 2 real steps (vLLM samples, reward, its advantage and loss, push),
    with the in-process Learner and DirectSync into the shared engine."""
    from rlreason.loop import run
    from rlreason.sync import DirectSync

    path, model_cfg = tiny_model_dir
    cfg = make_config(model_cfg, f"run_dir={tmp_path}", "steps=2", *SHORT_RUN, recipe=recipe)
    learner = in_process_learner(cfg, path)
    sync = DirectSync(learner, engine)
    sync.push(version=0)  # the engine may hold another test's weights
    before = learner.sequence_logprobs(IDS)
    run(cfg, engine, learner, sync, tmp_path)
    after = learner.sequence_logprobs(IDS)
    rows = read_rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows[1:])
    assert max_diff(before, after) > 1e-4  # the update moved the policy
    assert max_diff(engine.prompt_logprobs(IDS), after) < 1e-4  # and the engine serves it


def test_code_recipe_runs_through_the_sandbox(engine, tiny_model_dir, tmp_path):
    """The functions task with the sandboxed code reward, through the real loop: warm start,
    2 RL steps, every completion and every held-out answer run in bubblewrap, no infrastructure
    error. (After so short a warm start the model writes no passing function yet.)"""
    from rlreason.loop import run
    from rlreason.rewards import code
    from rlreason.sync import DirectSync

    path, model_cfg = tiny_model_dir
    cfg = make_config(model_cfg, f"run_dir={tmp_path}", "steps=2", "warm_start.steps=20", "rollout.prompts_per_step=4",
                      "rollout.group_size=4", "eval.size=8", recipe="functions_code_grpo")
    code.configure()  # as rlreason.train prepares the rewards: a fresh code reward, its counts from 0
    learner = in_process_learner(cfg, path)
    run(cfg, engine, learner, DirectSync(learner, engine), tmp_path)  # the warm start pushes version 0
    rows = read_rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["reward/errors"] == 0 for r in rows[1:]) and all(r["eval/reward_errors"] == 0 for r in (rows[0], rows[2]))
    counts = code._default.counts  # every sample ran in the sandbox
    assert counts["pass"] + counts["fail"] + counts["timeout"] == 2 * 16 + 2 * 8 and counts["error"] == 0


def test_loop_runs_learns_syncs_and_writes_metrics(workers, tiny_model_dir):
    """The loop over the split placement's parts (the Learner actor, the object-store sync): the
    weights change and the engine serves them; every step's metrics; held-out accuracy and the
    eval sets' (MATH-500, HumanEval in the sandbox) at each evaluation; a final/ model that
    transformers and vLLM load with the same logprobs."""
    from transformers import AutoModelForCausalLM

    from rlreason.cluster.placement import build_pool
    from rlreason.loop import run

    cfg, learner, engine, sync, run_dir = workers
    sync.push(version=0)  # the tests before this one left other weights in the shared engine
    before = learner.sequence_logprobs(IDS)
    result = run(cfg, engine, learner, sync, run_dir)
    after = learner.sequence_logprobs(IDS)

    assert max_diff(before, after) > 1e-3  # the weights changed
    assert max_diff(engine.prompt_logprobs(IDS), after) < 1e-4  # the engine serves them

    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for r in rows[1:]:
        assert math.isfinite(r["loss"])
        assert 0.0 <= r["reward/mean"] <= 1.0
        assert {"timing/rollout", "timing/update", "timing/sync", "timing/step", "reward/queue_wait_s"} <= set(r)
        assert r["timing/sync_wait"] == 0.0  # synchronous: no generation in flight to wait for
        assert r["reward/timeouts"] == 0  # math-verify's checks all answered in time
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
    fresh = build_pool(cfg, str(final))
    try:
        assert max_diff(fresh.prompt_logprobs(IDS), after) < 1e-4
    finally:
        fresh.shutdown()
