"""ESD-x: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023), cross-attention variant.

Per step, with the model being trained:

1. sample x_t on-policy: run DDIM from pure noise under the concept prompt, with
   classifier-free guidance, and stop at a random timestep t (no gradients);
2. target = eps_0(x_t, t, "") - eta * (eps_0(x_t, t, c) - eps_0(x_t, t, ""))  (frozen model);
3. loss = || eps_theta(x_t, t, c) - target ||^2, averaged over the batch.

Only cross-attention (attn2) is trained, as in ESD-x. With eta = 0 the target is the
frozen unconditional prediction, the same as MiM-MU with the empty anchor, so that
pair isolates MiM-MU's fixed forgetting set and log-SNR weighting.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from mimmu.checkpoints import TrainingState, resume_training_state, save_training_state
from mimmu.config import EraseConfig
from mimmu.devices import autocast
from mimmu.digest import json_sha256
from mimmu.embeddings import embed_prompts
from mimmu.loading import sampling_defaults
from mimmu.prompt_sets import ForgettingPrompt
from mimmu.trainable import select_trainable
from mimmu.trainer import TrainingHistory, check_finite

logger = logging.getLogger(__name__)


def esd_target(noise_pred_uncond: torch.Tensor, noise_pred_concept: torch.Tensor, eta: float) -> torch.Tensor:
    """Return ESD's negatively guided target eps_0(x_t, "") - eta * (eps_0(x_t, c) - eps_0(x_t, ""))."""
    return noise_pred_uncond - eta * (noise_pred_concept - noise_pred_uncond)


class EsdTrainer:
    """Trains the UNet's cross-attention in place with ESD-x.

    An epoch is ceil(N / batch size) steps for N forgetting prompts, so ESD-x and MiM-MU
    count their budgets alike. Each step draws its prompts at random.
    """

    def __init__(self, pipeline: DiffusionPipeline, prompts: list[ForgettingPrompt], config: EraseConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.device = pipeline.device
        self.unet = pipeline.unet
        self.dtype = self.unet.dtype
        self.generator = torch.Generator().manual_seed(config.seed)
        self.prompts = [p.prompt for p in prompts]
        self.prompt_embeds = embed_prompts(pipeline, self.prompts).float()  # (N, L, D)
        self.null_embeds = embed_prompts(pipeline, [""]).float()  # (1, L, D)
        self.frozen_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.parameters = select_trainable(self.unet, config.trainable, config.lora_rank, self.generator)
        # Mixed precision as in MiM-MU's trainer: trained weights in float32, forward passes autocast.
        for parameter in self.parameters.values():
            parameter.data = parameter.data.float()
        self.optimizer = torch.optim.Adam(list(self.parameters.values()), lr=config.learning_rate)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.sampler = DDIMScheduler.from_config(pipeline.scheduler.config)
        self.sampler.set_timesteps(config.esd_sampling_steps)
        self.guidance_scale = sampling_defaults(pipeline).guidance_scale

    def _predict(self, unet, latents: torch.Tensor, timesteps, embeds: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return unet(latents.to(self.dtype), timesteps, encoder_hidden_states=embeds.to(self.dtype)).sample

    @torch.no_grad()
    def _sample_to(self, embeds: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run DDIM with guidance from noise for `stop` steps; return x_t (B, C, H, W) in float32 and t (B,)."""
        channels, size = self.unet.config.in_channels, self.unet.config.sample_size
        latents = torch.randn((len(embeds), channels, size, size), generator=self.generator).to(self.device)
        null = self.null_embeds.expand(len(embeds), -1, -1)
        for timestep in self.sampler.timesteps[:stop]:
            both = torch.cat([null, embeds])
            pred = self._predict(self.unet, torch.cat([latents, latents]), timestep, both).float()
            uncond, cond = pred.chunk(2)
            latents = self.sampler.step(uncond + self.guidance_scale * (cond - uncond), timestep, latents).prev_sample
        t = self.sampler.timesteps[stop].expand(len(embeds)).to(self.device)
        return latents, t

    def _step(self, epoch: int, step: int) -> float:
        count = len(self.prompt_embeds)
        index = torch.randint(count, (min(self.config.batch_size, count),), generator=self.generator)
        embeds = self.prompt_embeds[index].to(self.device)
        stop = int(torch.randint(self.config.esd_sampling_steps, (1,), generator=self.generator))
        self.unet.eval()
        noisy_latents, timesteps = self._sample_to(embeds, stop)
        with torch.no_grad():
            uncond = self._predict(self.frozen_unet, noisy_latents, timesteps, self.null_embeds.expand_as(embeds))
            cond = self._predict(self.frozen_unet, noisy_latents, timesteps, embeds)
            target = esd_target(uncond.float(), cond.float(), self.config.esd_eta)
        self.unet.train()
        pred = self._predict(self.unet, noisy_latents, timesteps, embeds)
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        check_finite(loss, epoch, step, "Lower --learning-rate or --esd-eta")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skipped when a scaled float16 gradient overflowed
        self.scaler.update()
        return loss.item()

    def _state(self) -> TrainingState:
        return TrainingState(self.parameters, self.optimizer, self.generator, self.scaler)

    def _identity(self) -> dict:
        return {"config_digest": self.config.digest(), "prompts": json_sha256(self.prompts)}

    def train(
        self,
        checkpoint_dir: Path | None = None,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
    ) -> TrainingHistory:
        """Run config.epochs epochs and return the history, resuming from the newest checkpoint in `checkpoint_dir`.

        `callback(step, loss)` is called after every step, with the count of steps so far.
        """
        config = self.config
        history = TrainingHistory()
        start_epoch = (
            resume_training_state(checkpoint_dir, self._state(), self._identity(), history) if checkpoint_dir else 0
        )
        steps_per_epoch = -(-len(self.prompt_embeds) // config.batch_size)
        started = time.perf_counter()
        bar = tqdm(
            total=config.epochs * steps_per_epoch,
            initial=start_epoch * steps_per_epoch,
            desc="erase (esd)",
            disable=not progress,
        )
        for epoch in range(start_epoch, config.epochs):
            for step in range(steps_per_epoch):
                history.losses.append(self._step(epoch, step))
                bar.update()
                if callback is not None:
                    callback(len(history.losses), history.losses[-1])
            done = epoch + 1
            if checkpoint_dir and config.checkpoint_every and done % config.checkpoint_every == 0:
                save_training_state(checkpoint_dir, done, self._state(), self._identity(), history)
        bar.close()
        self.unet.eval()
        history.seconds = time.perf_counter() - started
        return history

    def changed_weights(self) -> dict[str, torch.Tensor]:
        """Return every trained cross-attention tensor by UNet state_dict name."""
        state = self.unet.state_dict()
        return {name: state[name].detach().float().cpu().contiguous() for name in sorted(self.parameters)}
