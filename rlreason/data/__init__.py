"""Prompt data: the built-in generated task, the tiny local model builder, samplers."""
