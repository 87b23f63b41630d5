"""Shared fixtures: offline settings and a tiny, randomly initialised Stable Diffusion pipeline."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest

# Set before diffusers or transformers are imported by any test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("DO_NOT_TRACK", "1")


def _write_character_tokenizer(folder: Path, words: tuple[str, ...] = ()) -> None:
    """Write a CLIP BPE tokenizer whose vocabulary is single characters, plus the merges that join each of `words`.

    Each word gets the merges that join its characters left to right ("s t", "st a",
    "sta r</w>" for star). Merges apply by rank across words, so an earlier word's
    merge can split a later one; `_whole_word_order` finds an order where none does.
    """
    symbols = list(string.ascii_lowercase + string.digits + ",.'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    merges = []
    for word in words:
        joined = word[0]
        for index, char in enumerate(word[1:], start=1):
            piece = char + "</w>" if index == len(word) - 1 else char
            merges.append(f"{joined} {piece}")
            joined += piece
            vocab.setdefault(joined, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in dict.fromkeys(merges)))


def _whole_word_order(folder: Path, words: list[str]) -> tuple[str, ...]:
    """Return `words` in an order whose merges make each word one word piece, as real CLIP vocabularies do."""
    from transformers import CLIPTokenizer

    order = sorted(words, key=lambda w: (-len(w), w))
    for _ in range(len(words)):
        _write_character_tokenizer(folder, tuple(order))
        tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
        split = [w for w in order if len(tokenizer(w, add_special_tokens=False).input_ids) != 1]
        if not split:
            return tuple(order)
        order = split + [w for w in order if w not in split]  # their merges first
    raise AssertionError(f"no merge order keeps {split} whole")


def minicanvas_words() -> list[str]:
    """Return every word of the MiniCanvas vocabulary and its synonyms ("lightning", "bolt", "banded", ...)."""
    from mimmu.minicanvas.captions import SYNONYMS
    from mimmu.minicanvas.vocabulary import ATTRIBUTES

    names = [v for values in ATTRIBUTES.values() for v in values] + list(SYNONYMS.values())
    return sorted({word for name in names for word in name.split()})


def build_tiny_sd_pipeline(folder: Path, whole_words: bool = True):
    """Build and save a tiny StableDiffusionPipeline (CLIP text encoder, 16 x 16 images).

    Its tokenizer spells words in single characters. With `whole_words`, every MiniCanvas
    vocabulary word is one word piece, as in a real CLIP vocabulary, and the concepts'
    own token embeddings can be trained.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    source = folder / "_tokenizer_source"
    _write_character_tokenizer(source, _whole_word_order(source, minicanvas_words()) if whole_words else ())
    tokenizer = CLIPTokenizer(
        str(folder / "_tokenizer_source" / "vocab.json"),
        str(folder / "_tokenizer_source" / "merges.txt"),
        model_max_length=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=96,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=96,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 32),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion pipeline directory, saved with safetensors weights."""
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def spelt_sd_dir(tmp_path_factory) -> Path:
    """The tiny pipeline with a tokenizer that spells every word in single characters."""
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("spelt-sd"), whole_words=False)


@pytest.fixture(scope="session")
def minicanvas_pipeline():
    """The embedded MiniCanvas pipeline on the CPU, loaded once per session."""
    from mimmu.loading import load_pipeline

    return load_pipeline("minicanvas", device="cpu")
