"""Ray: the learner and the rollout engines as actors, where they are placed, and the weight
syncs between them.

    actors.py         joining a cluster, actor environments and constructor arguments, ActorGroup
    placement.py      placement groups; build_placement(cfg, model) -> (engine, learner, sync)
    learner_group.py  the learner's actors (one, or M FSDP2 ranks) behind one RemoteLearner
    pool.py           the rollout pool: N vLLM engine actors behind one engine, dead ones replaced
    colocated.py      one actor holding the learner and the engine
    sync.py           one WeightSync per transport: colocated, object store, NCCL/gloo broadcast
"""
