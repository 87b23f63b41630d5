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


def _write_character_tokenizer(folder: Path) -> None:
    """Write a CLIP BPE tokenizer whose vocabulary is single characters and no merges."""
    symbols = list(string.ascii_lowercase + string.digits + ",.'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_tiny_sd_pipeline(folder: Path):
    """Build and save a tiny StableDiffusionPipeline (CLIP text encoder, 16 x 16 images)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    _write_character_tokenizer(folder / "_tokenizer_source")
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
def minicanvas_pipeline():
    """The embedded MiniCanvas pipeline on the CPU, loaded once per session."""
    from mimmu.loading import load_pipeline

    return load_pipeline("minicanvas", device="cpu")
