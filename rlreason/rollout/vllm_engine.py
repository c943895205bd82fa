"""The vLLM rollout engine: sampling with logprobs, and in-place weight loading.

Weight sync on vLLM 0.32 (CPU and GPU alike) goes through the model runner's
`reload_weights`, then the prefix cache is reset so that no KV block computed with the
old weights is reused. The iterator must carry every parameter of the state dict,
`lm_head.weight` included even when embeddings are tied: otherwise the engine keeps a
stale head without any error.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch

from rlreason.types import Sample


def cpu_engine_env(threads: int) -> dict[str, str]:
    """Environment for vLLM on a CPU-only node (must be set before vllm is imported)."""
    cores = threads or os.cpu_count() or 1
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in this process: ~4 s start
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "OMP_NUM_THREADS": str(cores),
    }


class VLLMEngine:
    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        max_model_len: int = 256,
        kv_cache_gib: float = 1.0,
        seed: int = 0,
        threads: int = 0,
        weight_transfer: str | None = None,
        sleep_mode: bool = False,
        enforce_eager: bool | None = None,
    ):
        """`weight_transfer`: a vLLM weight-transfer backend ('nccl', 'gloo': see
        rlreason.weight_transfer) to receive weights from the learner by broadcast; None =
        weights arrive through load_weights only. `sleep_mode`: build the engine so that
        sleep() can free its GPU memory (vLLM's sleep mode; GPU platforms only). `enforce_eager`:
        vLLM's own switch; None = eager on CPU (an engine starts in seconds), compiled (torch.compile
        and CUDA graphs) on GPUs. False on CPU compiles the model with inductor: about 25-50 s more
        at start (less once ~/.cache/vllm holds the graph), and a faster bf16 engine."""
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            for key, value in cpu_engine_env(threads).items():
                os.environ.setdefault(key, value)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))
        from vllm import LLM

        extra = {}
        if weight_transfer:
            from vllm.config import WeightTransferConfig

            from rlreason.weight_transfer import register_engine_backend

            register_engine_backend(weight_transfer)
            extra["weight_transfer_config"] = WeightTransferConfig(backend=weight_transfer)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
            # Logprobs of the distribution actually sampled from (after temperature/top-p),
            # which is what the importance ratio needs.
            logprobs_mode="processed_logprobs",
            gpu_memory_utilization=0.5 if on_gpu else 0.9,
            # search (rlreason.search) continues shared prefixes: their KV blocks are reused
            enable_prefix_caching=True,
            # vLLM-CPU 0.32 crashes ("CPU Generator does not use offset") when a seeded
            # request's prompt is prefilled over two scheduler steps; never split a prompt there.
            enable_chunked_prefill=on_gpu,
            enable_sleep_mode=sleep_mode,
            **extra,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.version = 0
        self.sleep_mode, self.asleep = sleep_mode, False
        self._warm_up()

    def _warm_up(self) -> None:
        """One 2-token request now: vLLM's first request costs about 1.8 s more than the next on
        the 2-core CPU (issue 23), and here it is paid while the engine starts (in `rlreason
        train`, beside the learner's warm start) instead of in the run's first evaluation.
        Sampling seeds are per request, so later samples do not change."""
        prompt = {"prompt_token_ids": self.tokenizer.encode("0")[:1] or [0]}
        self.llm.generate([prompt], self._params(1, 1, 1.0, 1.0, 2, 0)[0], use_tqdm=False)

    def _params(self, n_prompts: int, n: int, temperature: float, top_p: float, max_tokens: int, seed: int, stop: list[str] | None = None):
        from vllm import SamplingParams

        # One seed per request, so a prompt's samples do not depend on its batch neighbours.
        # vLLM gives sample j of a request seed + j: requests are spaced n apart, so every
        # sample of the call has its own seed (seed .. seed + n_prompts * n - 1).
        # detokenize=False: vLLM's per-step incremental detokenizer (and the decoding of every
        # logprob's token) costs ~15% of a CPU rollout; _groups decodes each completion once.
        # flat_logprobs: one flat list per completion, not a dict of Logprob objects per token.
        # `stop` (search by steps): vLLM matches stop strings on the detokenized text, so those
        # requests detokenize, and the step ends with its stop string.
        text = {"stop": stop, "include_stop_str_in_output": True} if stop else {"detokenize": False}
        return [
            SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0,
                           seed=seed + i * n, flat_logprobs=True, **text)
            for i in range(n_prompts)
        ]

    def _groups(self, outputs, detokenized: bool = False) -> list[list[Sample]]:
        """Samples of vLLM's RequestOutputs, the completions decoded in one batch_decode call
        (skip_special_tokens, as vLLM's own detokenizer does by default), or vLLM's own text when
        it detokenized (a stop string may end inside a token: its text is cut there)."""
        completions = [c for out in outputs for c in out.outputs]
        texts = iter([c.text for c in completions] if detokenized else
                     self.tokenizer.batch_decode([c.token_ids for c in completions], skip_special_tokens=True))
        groups = []
        for out in outputs:
            prompt_ids = list(out.prompt_token_ids)
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                # logprobs=0: each position holds exactly the sampled token's logprob
                logprobs = list(c.logprobs.logprobs) if c.logprobs is not None else [0.0] * len(ids)
                assert len(logprobs) == len(ids), f"{len(logprobs)} logprobs for {len(ids)} tokens"
                group.append(Sample(prompt_ids, ids, next(texts), logprobs, str(c.finish_reason), self.version))
            groups.append(group)
        return groups

    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int, seed: int,
        stop: list[str] | None = None,
    ) -> list[list[Sample]]:
        """n samples of each prompt; `stop`: strings that end a completion (kept at its end)."""
        params = self._params(len(prompts), n, temperature, top_p, max_tokens, seed, stop)
        return self._groups(self.llm.generate(prompts, params, use_tqdm=False), detokenized=bool(stop))

    def generate_stream(self, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int, seed: int):
        """generate, yielding [(prompt index, group), ...] as requests finish (each engine step's),
        so that scoring can start before the slowest completion is done. The same requests and
        seeds as generate: the same samples."""
        ids = self.llm.enqueue(prompts, self._params(len(prompts), n, temperature, top_p, max_tokens, seed), use_tqdm=False)
        # enqueue returns vLLM's internal ids ('<ours>-<8 random chars>'); outputs carry ours
        index = {rid.rsplit("-", 1)[0]: i for i, rid in enumerate(ids)}
        engine = self.llm.llm_engine
        while engine.has_unfinished_requests():
            finished = [out for out in engine.step() if out.finished]
            if finished:
                yield [(index[out.request_id], group) for out, group in zip(finished, self._groups(finished))]

    def shutdown(self) -> None:
        """Stop the engine now. An in-process engine's shutdown tears down vLLM's process-wide
        parallel state: left to the garbage collector, it can run while a later engine of the
        same process is sampling, and break it ("pipeline model parallel group is not
        initialized"). Idempotent."""
        self.llm.llm_engine.engine_core.shutdown()

    def load_weights(self, weights: dict[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]], version: int) -> int:
        """Load `weights` (a state dict, or (name, tensor) pairs: e.g. buckets fetched one at a
        time) and serve them as policy `version`."""
        items = weights.items() if isinstance(weights, dict) else weights
        # In-process engine core: vLLM consumes the iterator right here, so a lazy one (e.g.
        # bucket by bucket from the object store) works. A separate core process pickles the
        # kwargs, and a generator does not pickle: materialize the list there.
        in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(items) if in_process else iter(list(items))})
        return self.serve_version(version)

    def serve_version(self, version: int) -> int:
        """The weights of `version` are in (loaded here, or received by broadcast through
        update_weights): drop every KV block computed under the old ones and serve them."""
        self.llm.reset_prefix_cache()
        self.version = version
        return version

    # ---- sleep mode (colocated placement on GPUs: the learner trains while the engine sleeps) ----
    def sleep(self) -> None:
        """Free the KV cache and move the weights to host memory (vLLM sleep level 1)."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    # ---- vLLM's weight-transfer control plane (rlreason.weight_transfer drives it) ----
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self.llm.collective_rpc("init_weight_transfer_engine", args=(init_info,))

    def start_weight_update(self) -> None:
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, update_info: dict) -> None:
        self.llm.collective_rpc("update_weights", args=(update_info,))

    def finish_weight_update(self) -> None:
        self.llm.collective_rpc("finish_weight_update")

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        """Logprob of each token given the ones before it (len(token_ids) - 1 values)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        out = self.llm.generate(
            [TokensPrompt(prompt_token_ids=token_ids)],
            SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0),
            use_tqdm=False,
        )[0].prompt_logprobs
        return [out[i][token_ids[i]].logprob for i in range(1, len(token_ids))]
