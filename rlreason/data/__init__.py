"""Prompt data: the built-in generated tasks, data sets (hub ids, local files), prompt templates, samplers."""
