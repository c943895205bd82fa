"""One rank of a data-parallel learner: the Learner's model sharded with FSDP2 over M processes.

Each of M processes (Ray actors, rlreason.cluster.learner_group) builds an `FSDPLearner`; they
form one torch.distributed process group (gloo on CPU, nccl for CUDA tensors) and
`fully_shard` the model per decoder layer and at the root, so each holds 1/M of every
parameter, gradient and AdamW moment. The RL step is the Learner's own code (rlreason.learner.
policy); this class only overrides its data-parallel hooks:

- rows: every rank gets the whole batch and draws the same minibatch permutation (same seed);
  rank r takes the r-th contiguous share of each minibatch's rows, packs them into micro-batches
  as one process would, and pads its list with zero-weight micro-batches to the longest rank's
  count (every forward/backward is a collective: all ranks must run as many).
- loss weights: a micro-batch's weight is part_weight over the *whole minibatch*, as in one
  process, so the weighted losses of all ranks sum to the single-process aggregate. FSDP's
  reduce-scatter would average the ranks' gradients; it is set to sum instead
  (set_gradient_divide_factor(1) with sum reductions, which gloo supports), so M ranks make the
  same update as one process, up to float summation order.
- clipping: clip_grad_norm_ over DTensor gradients computes the global norm.
- statistics: each rank's weighted sums (loss, kl, clip_frac ...) and its rows of the old
  logprobs are all-reduced, so every rank reports the single-process numbers.
- non-finite checks are all-reduced too: all ranks raise together, none waits in a collective.
- weights / checkpoints gather full tensors (every rank takes part, rank 0 keeps them); the
  on-disk checkpoint is the single-process Learner's, so M=1 and M>1 checkpoints interchange.
- the KL reference is sharded the same way (no optimizer): M ranks hold one copy between them.

On GPUs layers compute in optim.mixed_precision (bf16 by default) with float32 gradient
reduction (MixedPrecisionPolicy); on CPU in model.dtype, or under torch.autocast when
optim.mixed_precision=bfloat16 is asked for explicitly. UNVERIFIED on GPU (no GPU here):
see docs/learner.md.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from rlreason.checkpoint import fingerprint, rng_state
from rlreason.learner.policy import Learner
from rlreason.types import Batch

# UpdateStats sums that are weighted shares of the batch (the grad norm is global already)
_SHARED_SUMS = ("loss", "policy_loss", "kl", "clip_frac", "entropy", "tis_clip_frac", "seen_weight", "seen_tokens")


def _full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a collective: every rank must call it), on CPU."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True)


class FSDPLearner(Learner):
    """Learner rank `rank` of `world`; see the module docstring. `master` = (host, port) of rank 0."""

    def __init__(self, rank: int, world: int, master: tuple[str, int], *learner_args, timeout_s: float = 600.0, **learner_kwargs):
        critic = learner_kwargs.get("critic") or (learner_args[7] if len(learner_args) > 7 else None)
        if critic is not None and critic.enabled:
            raise ValueError("critic.enabled is not supported with ray.learner_workers > 1 (FSDP); use one learner worker")
        self.rank, self.world = rank, world
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.cuda else torch.device("cpu")
        if not dist.is_initialized():
            # gloo for CPU tensors (always: statistics and checks are all-reduced on CPU), nccl for CUDA ones
            dist.init_process_group(
                "cpu:gloo,cuda:nccl" if self.cuda else "gloo", init_method=f"tcp://{master[0]}:{master[1]}",
                rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s),
            )
        from torch.distributed.device_mesh import init_device_mesh

        self.mesh = init_device_mesh(self.device.type, (world,))
        super().__init__(*learner_args, **learner_kwargs)

    def _autocast(self):
        """On GPUs the MixedPrecisionPolicy casts (see _wrap); on CPU, torch.autocast as one process."""
        return contextlib.nullcontext() if self.cuda else super()._autocast()

    # ---- sharding ----
    def _wrap(self, model):
        """fully_shard each decoder layer, then the root (embeddings, final norm, the tied head)."""
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        kwargs = {"mesh": self.mesh}
        if self.cuda and self.compute_dtype is not None:  # UNVERIFIED (no GPU here): bf16 compute, fp32 gradient reduction
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=self.compute_dtype, reduce_dtype=torch.float32)
        if self.cuda:
            model = model.to(self.device)
        for layer in model.model.layers:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        # sum the ranks' gradients instead of averaging them: the loss weights already divide by the
        # whole batch. Sum reductions with a divide factor of 1 avoid PREMUL_SUM, which gloo lacks.
        for module in model.modules():  # neither setter recurses
            if isinstance(module, FSDPModule):
                module.set_gradient_divide_factor(1.0)
                module.set_force_sum_reduction_for_comms(True)
        return model

    # ---- the rows of each rank ----
    def _max_over_ranks(self, n: int) -> int:
        t = torch.tensor([n])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def _rank_micro_batches(self, batch: Batch, idx: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
        mine = idx.tensor_split(self.world)[self.rank]
        micro = [(i, 1.0) for i in self._micro_batches(batch, mine)] if len(mine) else []
        n = self._max_over_ranks(len(micro))
        padding = micro[-1][0] if micro else idx[:1]  # its shortest micro-batch (or any row), weight 0
        return micro + [(padding, 0.0)] * (n - len(micro))

    @staticmethod
    def _reshard(model) -> None:
        """Free the gathered parameters a forward without backward leaves (FSDP keeps the root's
        unsharded after forward, for the backward that usually follows)."""
        from torch.distributed.fsdp import FSDPModule

        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: list[int]) -> list[float]:
        out = super().sequence_logprobs(token_ids)  # a sharded forward: every rank runs it
        self._reshard(self.model)
        return out

    @torch.no_grad()
    def _no_grad_logprobs(self, model, batch: Batch, temperature: float) -> torch.Tensor:
        from rlreason.learner.policy import micro_logprobs

        out = torch.zeros_like(batch.loss_mask)
        for idx, real in self._rank_micro_batches(batch, torch.arange(len(batch))):
            if real:
                out[idx] = micro_logprobs(model, batch, idx, temperature)[0]
            else:
                micro_logprobs(model, batch, idx, temperature)  # the others' collectives need this pass
        self._reshard(model)
        return self._all_sum(out)

    # ---- reductions ----
    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        cpu = t.detach().to("cpu", torch.float64, copy=True)
        dist.all_reduce(cpu)
        return cpu.to(t.device, t.dtype)

    def _reduce_stats(self, sums: dict, seen_old):
        keys = [k for k in _SHARED_SUMS if k in sums]
        totals = self._all_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64)).tolist()
        sums = {**sums, **dict(zip(keys, totals))}
        return sums, (self._all_sum(seen_old) if seen_old is not None else None)

    def _clip_grads(self, params, max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # DTensor grads: the global norm
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def _check_finite(self, x: torch.Tensor, where: str) -> None:
        bad = torch.tensor([0.0 if bool(torch.isfinite(x).all()) else 1.0])
        dist.all_reduce(bad)  # every rank raises together: none is left waiting in a collective
        if bad.item():
            raise FloatingPointError(
                f"non-finite value in {where} on {int(bad.item())} of {self.world} learner ranks; "
                "the optimizer step was skipped, weights are unchanged"
            )

    # ---- the KL reference: a frozen copy, sharded like the policy ----
    def make_reference(self) -> None:
        from transformers import AutoModelForCausalLM

        full = self._full_state(self.model, everywhere=True)
        ref = AutoModelForCausalLM.from_pretrained(self.model_path, **self.load_kwargs)
        ref.load_state_dict(full)
        self.ref_identity = {"source": "snapshot" if self.trained else "base", "sha256": fingerprint(full)}
        del full
        self.ref = self._wrap(ref).eval().requires_grad_(False)

    def _full_state(self, model, everywhere: bool = False) -> dict[str, torch.Tensor]:
        """The model's full state dict on CPU: on every rank (`everywhere`), else on rank 0 only ({} elsewhere)."""
        self._reshard(model)
        out = {}
        for name, value in model.state_dict().items():
            t = _full(value)  # every rank gathers, tensor by tensor
            if everywhere or self.rank == 0:
                out[name] = t
        return out

    # ---- weights out: every rank gathers, rank 0 returns ----
    def weights(self) -> dict[str, torch.Tensor] | None:
        full = self._full_state(self.model)
        return full if self.rank == 0 else None

    def weight_buckets(self, bucket_mb: float):
        """Rank 0: Learner.weight_buckets of the full tensors. Other ranks must run gather_weights
        at the same time (their share of each gather)."""
        from rlreason.weight_transfer import state_dict_buckets

        self._reshard(self.model)
        full = ((name, _full(value)) for name, value in self.model.state_dict().items())  # every rank gathers, tensor by tensor
        yield from state_dict_buckets(((name, t if self.rank == 0 else None) for name, t in full), bucket_mb)

    def send_weights(self) -> None:
        """Learner.send_weights: every rank gathers each tensor; rank 0 broadcasts it."""
        self._reshard(self.model)
        super().send_weights()

    def gather_weights(self, bucket_mb: float) -> None:
        """A rank other than 0's part in rank 0's weight_buckets."""
        for _ in self.weight_buckets(bucket_mb):
            pass

    # ---- checkpoints: the single-process Learner's files, written by rank 0 ----
    def _optimizer_fqn_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def _param_names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters()]  # the order of model.parameters(): torch's ids

    def save(self, path: str) -> str:
        full = self._full_state(self.model)
        if self.rank == 0:
            self.model.save_pretrained(path, state_dict=full)
            self.tokenizer.save_pretrained(path)
        dist.barrier()
        return path

    def save_checkpoint(self, path: str) -> None:
        """The files Learner.save_checkpoint writes, with the optimizer state in torch's own
        numbering (parameters in model order), so a single-process Learner can load it too."""
        p = Path(path)
        self.save(str(p / "policy"))
        optim = self._optimizer_fqn_state()
        ref_full = self._full_state(self.ref) if self.ref is not None and self.ref_identity["source"] == "snapshot" else None
        if self.rank == 0:
            ids = {n: i for i, n in enumerate(self._param_names())}
            optim = {
                "state": {ids[n]: s for n, s in optim["state"].items()},
                "param_groups": [{**g, "params": [ids[n] for n in g["params"]]} for g in optim["param_groups"]],
            }
            state = {
                "optimizer": optim,
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "rng": rng_state(),
                "trained": self.trained,
            }
            torch.save(state, p / "learner.pt")
            (p / "reference.json").write_text(json.dumps(self.ref_identity))
            if ref_full is not None:
                self.ref.save_pretrained(p / "reference", state_dict=ref_full)
        dist.barrier()

    def _load_model_state(self, model, state_dict: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        self._reshard(model)
        set_model_state_dict(model, state_dict, options=StateDictOptions(full_state_dict=True))

    def _load_optimizer_state(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = self._param_names()
        fqn = {
            "state": {names[i]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
        }
        set_optimizer_state_dict(self.model, self.optimizer, fqn, options=StateDictOptions(full_state_dict=True))

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
