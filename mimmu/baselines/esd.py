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
from dataclasses import replace

import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from mimmu.config import EraseConfig
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
    """Trains the UNet's cross-attention in place with ESD-x."""

    def __init__(self, pipeline: DiffusionPipeline, prompts: list[ForgettingPrompt], config: EraseConfig) -> None:
        self.pipeline = pipeline
        self.config = replace(config, trainable="attn2") if config.trainable != "attn2" else config
        self.device = pipeline.device
        self.unet = pipeline.unet
        self.generator = torch.Generator().manual_seed(config.seed)
        self.prompt_embeds = embed_prompts(pipeline, [p.prompt for p in prompts]).float()  # (N, L, D)
        self.null_embeds = embed_prompts(pipeline, [""]).float()  # (1, L, D)
        self.frozen_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.parameters = select_trainable(self.unet, "attn2", config.lora_rank, self.generator)
        self.optimizer = torch.optim.Adam(list(self.parameters.values()), lr=config.learning_rate)
        self.sampler = DDIMScheduler.from_config(pipeline.scheduler.config)
        self.sampler.set_timesteps(config.esd_sampling_steps)
        self.guidance_scale = sampling_defaults(pipeline).guidance_scale

    @torch.no_grad()
    def _sample_to(self, embeds: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run DDIM with guidance from noise for `stop` steps; return x_t and t (B,)."""
        channels, size = self.unet.config.in_channels, self.unet.config.sample_size
        latents = torch.randn((len(embeds), channels, size, size), generator=self.generator).to(self.device)
        null = self.null_embeds.expand(len(embeds), -1, -1)
        for timestep in self.sampler.timesteps[:stop]:
            both = torch.cat([null, embeds])
            pred = self.unet(torch.cat([latents, latents]), timestep, encoder_hidden_states=both).sample
            uncond, cond = pred.chunk(2)
            latents = self.sampler.step(uncond + self.guidance_scale * (cond - uncond), timestep, latents).prev_sample
        t = self.sampler.timesteps[stop].expand(len(embeds)).to(self.device)
        return latents, t

    def train(self, steps: int, progress: bool = True) -> TrainingHistory:
        """Run `steps` optimisation steps and return the loss history."""
        history = TrainingHistory()
        started = time.perf_counter()
        count = len(self.prompt_embeds)
        for step in tqdm(range(steps), desc="erase (esd)", disable=not progress):
            index = torch.randint(count, (min(self.config.batch_size, count),), generator=self.generator)
            embeds = self.prompt_embeds[index].to(self.device)
            stop = int(torch.randint(self.config.esd_sampling_steps, (1,), generator=self.generator))
            self.unet.eval()
            noisy_latents, timesteps = self._sample_to(embeds, stop)
            with torch.no_grad():
                uncond = self.frozen_unet(
                    noisy_latents, timesteps, encoder_hidden_states=self.null_embeds.expand_as(embeds)
                ).sample
                cond = self.frozen_unet(noisy_latents, timesteps, encoder_hidden_states=embeds).sample
                target = esd_target(uncond, cond, self.config.esd_eta)
            self.unet.train()
            pred = self.unet(noisy_latents, timesteps, encoder_hidden_states=embeds).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            check_finite(loss, 0, step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            history.losses.append(loss.item())
        self.unet.eval()
        history.seconds = time.perf_counter() - started
        return history

    def changed_weights(self) -> dict[str, torch.Tensor]:
        """Return every trained cross-attention tensor by UNet state_dict name."""
        state = self.unet.state_dict()
        return {name: state[name].detach().float().cpu().contiguous() for name in sorted(self.parameters)}
