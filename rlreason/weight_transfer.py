"""Moving weights out of a learner and into vLLM engines: the adapter below both `learner/` and
`rollout/` (neither imports `cluster/`; the sync objects in rlreason.sync and
rlreason.cluster.sync drive what is here).

- `state_dict_buckets`: a state dict as buckets of about N MiB (the object-store transport).
- `free_address`: this node's IP and a free port (the rendezvous of a process group).
- The collective transport: learner rank 0 broadcasts every tensor to every rollout engine.

The collective transport is vLLM's own weight-transfer API (vllm.distributed.weight_transfer), not a copy of it:

- the engines are built with `weight_transfer_config` (VLLMEngine's `weight_transfer`), and
  expose the worker's control plane (init_weight_transfer_engine, start_weight_update,
  update_weights, finish_weight_update) through `collective_rpc`;
- the learner drives a round with vLLM's trainer-side engine: it tells every engine what to
  expect (names, dtypes, shapes), then broadcasts from rank 0 while they receive and load
  layer by layer (vLLM's layerwise reload).

Backends:

- 'nccl': vLLM's dense NCCL engine, for GPU clusters (PyNcclCommunicator, packed buffers).
- 'gloo': the same protocol over a gloo group (the classes below: the NCCL engine with its
  communicator swapped), for CPU nodes and for the tests on this CPU machine. Its engine class
  is registered with vLLM's factory in the engine's process, so it needs vLLM's engine core in
  that process (VLLM_ENABLE_V1_MULTIPROCESSING=0, which is how rlreason runs vLLM on CPU).

vLLM's trainer engine gives a data-parallel deployment one rank offset; rlreason's rollout
workers are N independent engines, so `EngineClient` gives worker k the ranks after worker
k-1's (1 + k * tensor_parallel_size ...). A group cannot take a new member: a replaced
rollout worker is an error with this transport (see rlreason.cluster.pool.RolloutPool._replace).
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import timedelta
from typing import Any, Iterator

import torch

def free_address() -> tuple[str, int]:
    """This node's IP and a free TCP port: where rank 0 listens for a process group."""
    import socket

    try:
        import ray

        host = ray.util.get_node_ip_address()
    except Exception:  # not in Ray
        host = "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return host, s.getsockname()[1]


def state_dict_buckets(tensors: Iterator[tuple[str, torch.Tensor]], bucket_mb: float):
    """(name, tensor) pairs, in order, as lists of about `bucket_mb` MiB each (a bigger tensor
    travels alone): a transport sends one bucket at a time, so no process holds a second full
    copy of the model. Pairs whose tensor is None (another rank's share) are passed over."""
    limit, bucket, size = bucket_mb * 2**20, [], 0
    for name, tensor in tensors:
        if tensor is None:
            continue
        if bucket and size + tensor.nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += tensor.nbytes
    if bucket:
        yield bucket


def _vllm_weight_transfer():
    from vllm.distributed.weight_transfer import base, nccl_engine

    return base, nccl_engine


# ---- the trainer side ----
def state_dict_source(model: torch.nn.Module):
    """A vLLM WeightSource over the model's *state dict*: every tensor, lm_head.weight included
    when tied (vLLM's ModuleSource walks named_parameters, which drops the tied head, and the
    engine would keep a stale one). DTensors (FSDP2) are gathered one by one as they are sent."""
    base, _ = _vllm_weight_transfer()

    class StateDictSource(base.WeightSource):
        def metadata(self):
            return [base.ParamMeta(k, v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()]

        def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
            for k, v in model.state_dict().items():
                yield k, base.materialize_full_tensor(v).detach()

    return StateDictSource()


class EngineClient:
    """vLLM's VLLMWeightSyncClient over rlreason's rollout engine actors: every call goes to every
    engine and waits for all. `ranks_per_engine`: the tensor-parallel size of one engine."""

    def __init__(self, engines: list, ranks_per_engine: int = 1):
        self.engines, self.ranks_per_engine = engines, ranks_per_engine

    def _all(self, method: str, per_engine=lambda k: ()) -> None:
        import ray

        ray.get([getattr(e, method).remote(*per_engine(k)) for k, e in enumerate(self.engines)])

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        first = init_info["rank_offset"]  # 1: the trainer is rank 0
        self._all("init_weight_transfer_engine", lambda k: ({**init_info, "rank_offset": first + k * self.ranks_per_engine},))

    def start_weight_update(self) -> None:
        self._all("start_weight_update")

    def update_weights(self, update_info) -> None:
        self._all("update_weights", lambda k: (update_info,))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._all("finish_weight_update")


def open_sender(backend: str, model: torch.nn.Module, engines: list, rank: int, timeout_s: float,
                ranks_per_engine: int = 1):
    """The trainer side of one transfer group: rank 0 opens it on its node (every engine joins at
    once); other learner ranks (FSDP2) are not in it and only take part in each tensor's gather.
    Returns vLLM's trainer engine: call `send_weights()` on every learner rank to sync."""
    _, nccl_engine = _vllm_weight_transfer()
    address = free_address() if rank == 0 else ("", 0)
    cls = nccl_engine.NCCLTrainerWeightTransferEngine if backend == "nccl" else GlooTrainer()
    info = nccl_engine.NCCLTrainerInitInfo(
        master_address=address[0], master_port=address[1], world_size=1 + len(engines) * ranks_per_engine,
        rank=rank, packed=backend == "nccl",
    )
    info.timeout_s = timeout_s  # gloo's group timeout (NCCL's trainer info has no such field)
    return cls.trainer_init(info, client=EngineClient(engines, ranks_per_engine), source=state_dict_source(model))


# ---- gloo: vLLM's NCCL protocol with a gloo communicator ----
class GlooGroup:
    """The communicator interface the NCCL engines use (broadcast(tensor, src, stream), destroy),
    over a gloo process group outside torch.distributed's global state."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, timeout_s: float):
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group

        self.pg = stateless_init_torch_distributed_process_group(
            host, port, rank, world_size, "gloo", timeout=timedelta(seconds=timeout_s)
        )

    def broadcast(self, tensor: torch.Tensor, src: int = 0, stream=None) -> None:
        opts = torch.distributed.BroadcastOptions()
        opts.rootRank = src
        self.pg.broadcast([tensor], opts).wait()

    def destroy(self) -> None:
        from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

        stateless_destroy_torch_distributed_process_group(self.pg)


@functools.cache
def GlooEngine():
    """The engine-side class for backend 'gloo' (built lazily: vLLM is imported only where used)."""
    _, nccl_engine = _vllm_weight_transfer()

    @dataclasses.dataclass(kw_only=True)
    class GlooInitInfo(nccl_engine.NCCLWeightTransferInitInfo):
        timeout_s: float = 600.0

    class GlooWeightTransferEngine(nccl_engine.NCCLWeightTransferEngine):
        init_info_cls = GlooInitInfo

        def init_transfer_engine(self, init_info) -> None:
            p = self.parallel_config
            rank = p.data_parallel_index * p.world_size + p.rank + init_info.rank_offset
            self.packed = False
            self.model_update_group = GlooGroup(init_info.master_address, init_info.master_port, rank,
                                                init_info.world_size, init_info.timeout_s)

        def receive_weights(self, update_info) -> None:
            for name, dtype_name, shape in zip(update_info.names, update_info.dtype_names, update_info.shapes):
                weight = torch.empty(shape, dtype=getattr(torch, dtype_name))
                self.model_update_group.broadcast(weight, src=0)
                self.model.load_weights([(name, weight.to(self.device))])

    return GlooWeightTransferEngine


@functools.cache
def GlooTrainer():
    """The trainer-side class for backend 'gloo'."""
    from concurrent.futures import ThreadPoolExecutor

    _, nccl_engine = _vllm_weight_transfer()

    class GlooTrainerWeightTransferEngine(nccl_engine.NCCLTrainerWeightTransferEngine):
        @classmethod
        def trainer_init(cls, init_info, *, client, source=None):
            engine = cls(client=client, source=source, is_sender=init_info.is_sender, packed=False)
            if not engine.is_sender:
                return engine
            worker_info = {"master_address": init_info.master_address, "master_port": init_info.master_port,
                           "rank_offset": 1, "world_size": init_info.world_size, "packed": False,
                           "timeout_s": init_info.timeout_s}
            # the engines block in their rendezvous until rank 0 opens the group: start them first
            with ThreadPoolExecutor(max_workers=1) as exe:
                joined = exe.submit(client.init_weight_transfer_engine, worker_info)
                engine.model_update_group = GlooGroup(init_info.master_address, init_info.master_port, 0,
                                                      init_info.world_size, init_info.timeout_s)
                joined.result()
            return engine

        def _broadcast(self, source, meta) -> None:
            if not self.is_sender:
                for _ in source:
                    pass
                return
            for _name, tensor in self._checked_iter(source, meta):
                self.model_update_group.broadcast(tensor.to("cpu").contiguous(), src=0)

        def _post_send_sync(self) -> None:
            pass

    return GlooTrainerWeightTransferEngine


def register_engine_backend(backend: str) -> None:
    """Make `backend` known to vLLM's weight-transfer factory in this process (nccl is built in)."""
    if backend != "gloo":
        return
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    if "gloo" not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine("gloo", GlooEngine())
