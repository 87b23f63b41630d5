"""The MiM-MU trainer: minimise the concept's mutual information on a fixed forgetting set.

Recipe, per epoch over the forgetting set (see mimmu.objective for the loss):

1. draw timesteps t ~ q(t) with weights delta_lambda_t / q(t), and noise eps;
2. noise the stored latents: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;
3. predict with the trained model on the concept prompt, and with the frozen model on
   the anchor prompt;
4. step the optimizer (Adam or SGD) on the weighted squared distance.

What trains is `config.trainable`: by default the concepts' own rows of the text
encoder's input embeddings (mimmu.concept_tokens), so the concept prompts are encoded
again at every step; otherwise to_k and to_v (or more of cross-attention), whose update
is projected after each step away from the directions it must leave alone: the principal
directions of the anchor prompts' token states (preserve_anchors) and the empty prompt's
token states (preserve_null).

Every `mi_check_every` epochs the conditional MI of the forgetting set is estimated with
the trainable model, for the MI curve and for early stopping. A NaN or infinite loss
stops the run with an error; checkpoints allow an interrupted run to resume exactly.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from mimmu.checkpoints import TrainingState, resume_training_state, save_training_state
from mimmu.concept_tokens import ConceptTokenEdit, editable_token_ids, prompts_without
from mimmu.concepts import contains_concept
from mimmu.config import EraseConfig
from mimmu.devices import autocast
from mimmu.embeddings import embed_prompts
from mimmu.errors import MimmuError
from mimmu.forgetting_set import ForgettingSet
from mimmu.mutual_information import MI_DRAWS, pointwise_mi, rows_per_group, summarize
from mimmu.objective import mimmu_loss
from mimmu.prompt_sets import ForgettingPrompt, vocabulary_prompts
from mimmu.schedule import TimestepSampler
from mimmu.trainable import UpdateProjection, bake_low_rank, preservation_projector, select_trainable

logger = logging.getLogger(__name__)

MI_SUBSET = 64  # forgetting-set latents used for each MI estimate during training


@dataclass
class TrainingHistory:
    """Loss per step and the forgetting set's MI estimate (nats) per check."""

    losses: list[float] = field(default_factory=list)
    mi: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0


def _noisy(
    latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    abar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    return abar.sqrt() * latents + (1 - abar).sqrt() * noise


def learning_rate_at(step: int, total_steps: int, learning_rate: float, schedule: str) -> float:
    """Return the learning rate of optimisation step `step` (0-based) of `total_steps`.

    "constant" keeps `learning_rate`. "cosine" decays it to 0 over the run (Loshchilov and
    Hutter, SGDR, ICLR 2017): lr_s = learning_rate * (1 + cos(pi * s / total_steps)) / 2.
    """
    if schedule == "cosine":
        return learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    return learning_rate


def check_finite(
    loss: torch.Tensor, epoch: int, step: int, hint: str = "Lower --learning-rate or use --timestep-sampling log_snr"
) -> None:
    """Raise when a loss is NaN or infinite, naming where (epoch and step, from 0) and what to change (`hint`)."""
    if not torch.isfinite(loss):
        raise MimmuError(
            f"loss became {loss.item()} at epoch {epoch}, step {step}; the run is stopped and no model is written. "
            + hint
        )


def estimate_forgetting_mi(
    unet,
    alphas_cumprod: torch.Tensor,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    anchor_embeds: torch.Tensor,
    concepts: list[str],
    seed: int,
) -> dict:
    """Return the orthogonal-form MI of MI_SUBSET forgetting latents, as a dict.

    `concepts` names the erased concept of each latent. Each concept contributes its first
    latents in equal shares, so a multi-concept run tracks every concept.
    """
    rows = rows_per_group(concepts, MI_SUBSET)
    generator = torch.Generator().manual_seed(seed)
    device = prompt_embeds.device
    pointwise = pointwise_mi(
        unet,
        alphas_cumprod,
        latents[rows].to(device),
        prompt_embeds[rows],
        anchor_embeds[rows],
        draws_per_image=MI_DRAWS,
        generator=generator,
    )
    return summarize(pointwise, MI_DRAWS, "orthogonal").to_dict()


def preserved_anchor_rows(prompts: list[ForgettingPrompt]) -> list[int]:
    """Return the rows of forgetting prompts whose anchors name none of the run's erased concepts."""
    erased = sorted({p.concept for p in prompts})
    return [i for i, p in enumerate(prompts) if not any(contains_concept(p.anchor, concept) for concept in erased)]


class MimmuTrainer:
    """Trains a pipeline in place: the concepts' token rows, to_k and to_v, or both (config.trainable)."""

    def __init__(self, pipeline: DiffusionPipeline, forgetting_set: ForgettingSet, config: EraseConfig) -> None:
        self.pipeline = pipeline
        self.forgetting_set = forgetting_set
        self.config = config
        self.device = pipeline.device
        self.unet = pipeline.unet
        self.alphas_cumprod = pipeline.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.sampler = TimestepSampler.build(pipeline.scheduler.alphas_cumprod, config.timestep_sampling)
        self.generator = torch.Generator().manual_seed(config.seed)
        # Mixed precision: trainable weights in float32, forward passes autocast to the pipeline's
        # dtype, and with float16 the loss is scaled so that small gradients do not underflow.
        # TODO: the tests run this path with bfloat16 on the CPU; CUDA float16 has not run here.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.unet.dtype == torch.float16)

        prompts = [p.prompt for p in forgetting_set.prompts]
        anchors = [p.anchor for p in forgetting_set.prompts]
        self.prompt_embeds = embed_prompts(pipeline, prompts)  # (N, L, D)
        self.anchor_embeds = embed_prompts(pipeline, anchors)  # (N, L, D)
        # "tokens" trains only the concepts' input token embeddings; "kv_tokens" those and to_k, to_v.
        self.trains_unet = config.trainable != "tokens"
        self.trains_tokens = config.trainable in ("tokens", "kv_tokens")
        if pipeline.text_encoder is not None:
            pipeline.text_encoder.requires_grad_(False)
        if self.trains_unet:
            self.frozen_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
            unet_set = "kv" if config.trainable == "kv_tokens" else config.trainable
            self.parameters = select_trainable(self.unet, unet_set, config.lora_rank, self.generator)
        else:  # the UNet does not change, so it is its own frozen copy
            self.unet.requires_grad_(False).eval()
            self.frozen_unet = self.unet
            self.parameters = {}
        for parameter in self.parameters.values():
            parameter.data = parameter.data.float()
        # One parameter group per rate; "base_lr" is the rate that the schedule scales.
        groups = [{"params": list(self.parameters.values()), "base_lr": config.learning_rate}]
        self.token_edit = self._build_token_edit(pipeline) if self.trains_tokens else None
        if self.token_edit is not None:
            token_rows = self.token_edit.named_parameters()
            self.parameters.update(token_rows)
            groups.append({"params": list(token_rows.values()), "base_lr": config.token_learning_rate})
        groups = [group for group in groups if group["params"]]
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=config.learning_rate, momentum=0.9)
        else:
            self.optimizer = torch.optim.Adam(groups, lr=config.learning_rate)
        self.projection = self._build_projection(pipeline) if self.trains_unet else None

    def _build_token_edit(self, pipeline: DiffusionPipeline) -> ConceptTokenEdit:
        """Return the trainable rows of the erased concepts' word pieces that no other prompt uses."""
        if pipeline.text_encoder is None or pipeline.tokenizer is None:
            raise MimmuError(
                "the pipeline has no text encoder and tokenizer, so its token embeddings cannot be trained"
            )
        concepts = sorted({p.concept for p in self.forgetting_set.prompts})
        # NOTE: other prompts are the anchors and MiniCanvas's captions, so a piece that a model outside
        # that world shares with other words ("van" in "Van Gogh" and "a white van") is not caught.
        others = prompts_without(concepts, [p.anchor for p in self.forgetting_set.prompts] + vocabulary_prompts())
        token_ids = editable_token_ids(pipeline.tokenizer, concepts, others)
        logger.info(
            "training the input embeddings of word pieces %s", pipeline.tokenizer.convert_ids_to_tokens(token_ids)
        )
        return ConceptTokenEdit(pipeline, token_ids)

    def _build_projection(self, pipeline: DiffusionPipeline) -> UpdateProjection | None:
        """Return the projection of to_k and to_v updates that the preservation options request, or None."""
        config = self.config
        if not (config.preserve_null or config.preserve_anchors):
            return None
        null_states = embed_prompts(pipeline, [""]).flatten(0, 1).cpu()  # (L, D)
        # When red and star are erased together, "a star" (the anchor of "a red star") would
        # protect star. Only anchors that name no concept of this run count.
        rows = preserved_anchor_rows(self.forgetting_set.prompts)
        anchor_states = self.anchor_embeds[rows].flatten(0, 1).cpu()  # (len(rows) * L, D)
        projector = preservation_projector(null_states, anchor_states, config.preserve_null, config.preserve_anchors)
        free = int(round(torch.trace(projector).item()))
        logger.info("updates of to_k and to_v are kept in %d of %d token-state dimensions", free, len(projector))
        return UpdateProjection(self.parameters, projector)

    def _forward(self, unet, noisy_latents, timesteps, embeds) -> torch.Tensor:
        with autocast(self.device, self.unet.dtype):
            return unet(noisy_latents.to(unet.dtype), timesteps, encoder_hidden_states=embeds.to(unet.dtype)).sample

    def _prompt_embeds(self, index: torch.Tensor) -> torch.Tensor:
        """Return the concept prompts' embeddings of rows `index`, through the edited rows when tokens train."""
        if self.token_edit is None:
            return self.prompt_embeds[index]
        prompts = [self.forgetting_set.prompts[i].prompt for i in index.tolist()]
        with torch.enable_grad():
            prompt_embeds, _ = self.pipeline.encode_prompt(prompts, self.device, 1, do_classifier_free_guidance=False)
        return prompt_embeds

    def _step(self, index: torch.Tensor, epoch: int, step: int) -> float:
        latents = self.forgetting_set.latents[index].to(self.device, torch.float32)
        timesteps, weights = self.sampler.sample(len(index), self.generator)
        noise = torch.randn(latents.shape, generator=self.generator).to(self.device)
        timesteps = timesteps.to(self.device)
        noisy_latents = _noisy(latents, noise, self.alphas_cumprod, timesteps)
        noise_pred_concept = self._forward(self.unet, noisy_latents, timesteps, self._prompt_embeds(index))
        with torch.no_grad():
            noise_pred_anchor = self._forward(self.frozen_unet, noisy_latents, timesteps, self.anchor_embeds[index])
        loss = mimmu_loss(noise_pred_concept, noise_pred_anchor, weights.to(self.device))
        check_finite(loss, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skipped when a scaled float16 gradient overflowed
        self.scaler.update()
        if self.projection is not None:
            self.projection.apply()
        return loss.item()

    def _state(self) -> TrainingState:
        return TrainingState(self.parameters, self.optimizer, self.generator, self.scaler)

    def _identity(self) -> dict:
        return {"config_digest": self.config.digest(), "forgetting_set": self.forgetting_set.manifest.get("key")}

    def train(
        self,
        checkpoint_dir: Path | None = None,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
    ) -> TrainingHistory:
        """Run the epochs (resuming from `checkpoint_dir` when it contains a checkpoint) and return the history."""
        from tqdm.auto import tqdm

        config = self.config
        history = TrainingHistory()
        start_epoch = (
            resume_training_state(checkpoint_dir, self._state(), self._identity(), history) if checkpoint_dir else 0
        )
        if history.stopped_early:  # the run had already stopped early when it was interrupted
            logger.info("the checkpoint at epoch %d had stopped early; nothing left to train", start_epoch)
            self.unet.eval()
            return history
        count = len(self.forgetting_set.latents)
        steps_per_epoch = -(-count // config.batch_size)
        total_steps = config.epochs * steps_per_epoch
        started = time.perf_counter()
        bar = tqdm(
            total=total_steps,
            initial=start_epoch * steps_per_epoch,
            desc="erase",
            disable=not progress,
        )
        self.unet.train(self.trains_unet)
        for epoch in range(start_epoch, config.epochs):
            order = torch.randperm(count, generator=self.generator)
            for step, begin in enumerate(range(0, count, config.batch_size)):
                scale = learning_rate_at(len(history.losses), total_steps, 1.0, config.learning_rate_schedule)
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * scale
                loss = self._step(order[begin : begin + config.batch_size], epoch, step)
                history.losses.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}")
                if callback is not None:
                    callback(len(history.losses), loss)
            done = epoch + 1
            if done % config.mi_check_every == 0 or done == config.epochs:
                estimate = self.estimate_mi(seed=config.seed + done)
                history.mi.append({"epoch": done, **estimate})
                logger.info(
                    "epoch %d: forgetting-set MI %.4f +- %.4f nats", done, estimate["value"], estimate["stderr"]
                )
                if config.mi_tolerance > 0 and estimate["value"] < config.mi_tolerance:
                    history.stopped_early = True
            if (
                checkpoint_dir
                and config.checkpoint_every
                and (done % config.checkpoint_every == 0 or history.stopped_early)
            ):
                save_training_state(checkpoint_dir, done, self._state(), self._identity(), history)
            if history.stopped_early:
                logger.info("stopping early at epoch %d: MI under %.4f nats", done, config.mi_tolerance)
                break
        bar.close()
        self.unet.eval()
        history.seconds = time.perf_counter() - started
        return history

    def estimate_mi(self, seed: int) -> dict:
        """Return the current model's MI estimate on the forgetting set (concept vs anchor prompt)."""
        self.unet.eval()
        if self.token_edit is not None:  # the cached embeddings predate the latest rows
            self.prompt_embeds = embed_prompts(self.pipeline, [p.prompt for p in self.forgetting_set.prompts])
        # Measured on the concept prompts' own images, so runs with and without anchor images compare.
        latents = self.forgetting_set.concept_latents
        concepts = [p.concept for p in self.forgetting_set.prompts[: len(latents)]]
        estimate = estimate_forgetting_mi(
            self.unet, self.alphas_cumprod, latents, self.prompt_embeds, self.anchor_embeds, concepts, seed
        )
        self.unet.train(self.trains_unet)
        return estimate

    def changed_weights(self) -> dict[str, torch.Tensor]:
        """Bake adapters and token rows into the model and return every changed tensor by artifact name."""
        bake_low_rank(self.unet)
        names = {
            name.removesuffix(".lora_A").removesuffix(".lora_B")
            for name in self.parameters
            if not name.startswith("text_encoder.")
        }
        state = self.unet.state_dict()
        weights = {name: state[name].detach().float().cpu().contiguous() for name in sorted(names)}
        if self.token_edit is not None:
            self.token_edit.bake()
            weights.update(self.token_edit.changed_weights())
        return weights
