"""Validation of user prompts against a pipeline's tokenizer."""

from __future__ import annotations

from diffusers import DiffusionPipeline

from mimmu.errors import MimmuError


def validate_prompts(prompts: list[str], pipeline: DiffusionPipeline | None = None) -> list[str]:
    """Return `prompts` stripped of surrounding space, or raise on an empty list, blank or too long prompt."""
    if not prompts:
        raise MimmuError("no prompts given; pass at least one --prompt")
    cleaned = []
    for prompt in prompts:
        if not prompt.strip():
            raise MimmuError(f"prompt {prompt!r} is empty or whitespace; pass a prompt with text")
        cleaned.append(prompt.strip())
    tokenizer = getattr(pipeline, "tokenizer", None)
    if tokenizer is not None:
        limit = tokenizer.model_max_length
        for prompt in cleaned:
            length = len(tokenizer(prompt, truncation=False).input_ids)
            if length > limit:
                raise MimmuError(f"prompt {prompt!r} has {length} tokens but the tokenizer allows {limit}; shorten it")
    return cleaned
