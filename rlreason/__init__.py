"""rlreason: RL fine-tuning for verifiable reasoning."""

__version__ = "0.1.0"
