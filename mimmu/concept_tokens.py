"""The erased concepts' own input token embeddings, trained next to (or instead of) to_k and to_v.

The text encoder mixes every word into the states of every position: in MiniLM the
[CLS], [SEP] and padding states of "a red star" differ from those of "a star". Anchor
preservation protects most of the directions that difference lies in, so an edit of
to_k and to_v cannot reach it (docs/benchmarks.md, "Which prompts and which token
states keep the remainder"). A concept's word pieces enter the encoder through
their rows of its input embedding table, before any mixing. Training those rows moves
what "red" writes into every position, and a prompt without the word pieces is encoded
exactly as before.

The edit is kept as float32 rows (one per word piece) and applied by a forward hook on
the encoder's input embedding layer, so gradients reach the rows through the frozen
encoder whatever its dtype. The artifact stores each trained row under
`text_encoder.input_embeddings.<token id>` (see mimmu.artifact.apply_weights).
"""

from __future__ import annotations

import logging

import torch
from diffusers import DiffusionPipeline
from torch import nn

from mimmu.concepts import contains_concept
from mimmu.errors import MimmuError

logger = logging.getLogger(__name__)

WEIGHT_PREFIX = "text_encoder.input_embeddings."


def concept_token_ids(tokenizer, concept: str) -> list[int]:
    """Return the ids of the word pieces `tokenizer` writes for `concept`, without special tokens."""
    return list(dict.fromkeys(tokenizer(concept, add_special_tokens=False).input_ids))


def editable_token_ids(tokenizer, concepts: list[str], other_prompts: list[str]) -> list[int]:
    """Return the word pieces of `concepts` that no prompt in `other_prompts` uses, or raise.

    Editing a word piece changes every prompt that contains it. `other_prompts` are the
    prompts that must stay unchanged (those naming none of the concepts, the empty prompt
    among them), so a word piece they share, such as "a" or "of", is left alone.
    """
    shared = {token for ids in tokenizer(list(other_prompts)).input_ids for token in ids}
    editable: list[int] = []
    for concept in concepts:
        pieces = concept_token_ids(tokenizer, concept)
        own = [token for token in pieces if token not in shared]
        skipped = [token for token in pieces if token in shared]
        if skipped:
            logger.info(
                "word pieces %s of %r also occur in prompts without it, so their embeddings are not trained",
                tokenizer.convert_ids_to_tokens(skipped),
                concept,
            )
        if not own:
            raise MimmuError(
                f"every word piece of concept {concept!r} ({', '.join(tokenizer.convert_ids_to_tokens(pieces))}) "
                "also occurs in prompts without the concept, so editing its embeddings would change them; "
                "pass --trainable kv"
            )
        editable.extend(token for token in own if token not in editable)
    return editable


def prompts_without(concepts: list[str], prompts: list[str]) -> list[str]:
    """Return the empty prompt and every prompt of `prompts` that names none of `concepts`."""
    return [""] + [p for p in prompts if not any(contains_concept(p, c) for c in concepts)]


class ConceptTokenEdit:
    """Trainable replacement rows (k, D) for k word pieces of the text encoder's input embedding table.

    While the edit is attached, every forward pass of the pipeline's text encoder reads
    the trained rows for those word pieces, so `pipeline.encode_prompt` under
    torch.enable_grad() gives prompt embeddings with gradients to the rows.
    """

    def __init__(self, pipeline: DiffusionPipeline, token_ids: list[int]) -> None:
        table = pipeline.text_encoder.get_input_embeddings()
        self._table = table
        self.token_ids = list(token_ids)
        self.rows = nn.Parameter(table.weight.detach()[self.token_ids].float().clone())  # (k, D)
        # Row of self.rows for each vocabulary id, -1 where the id is not edited.
        self._row_of = torch.full((table.num_embeddings,), -1, dtype=torch.long)
        self._row_of[torch.tensor(self.token_ids)] = torch.arange(len(self.token_ids))
        self._handle = table.register_forward_hook(self._replace_rows)

    def _replace_rows(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        rows = self._row_of.to(inputs[0].device)[inputs[0]]  # (B, L), -1 for untouched positions
        edited = rows >= 0
        if not edited.any():
            return output
        replacement = self.rows.to(output.device, output.dtype)[rows.clamp(min=0)]  # (B, L, D)
        return torch.where(edited.unsqueeze(-1), replacement, output)

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Return the rows as one parameter, named for optimizer and checkpoint state."""
        return {"text_encoder.concept_token_rows": self.rows}

    def changed_weights(self) -> dict[str, torch.Tensor]:
        """Return every trained row under its artifact name, `text_encoder.input_embeddings.<token id>`."""
        return {
            f"{WEIGHT_PREFIX}{token}": self.rows.detach()[i].float().cpu().contiguous()
            for i, token in enumerate(self.token_ids)
        }

    def bake(self) -> None:
        """Write the trained rows into the embedding table and remove the hook (the text encoder keeps the edit)."""
        if self._handle is None:
            return
        self._handle.remove()
        self._handle = None
        weight = self._table.weight
        with torch.no_grad():
            weight[self.token_ids] = self.rows.detach().to(weight.device, weight.dtype)
