"""The policy update: batching, per-token logprobs, optimizer; torch and transformers only."""
