"""Ray: connecting to a cluster, actors for the learner and the rollout engine, weight transport."""
