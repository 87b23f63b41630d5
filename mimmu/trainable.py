"""Selection of the UNet weights an erasure trains, and the projections that keep chosen prompts' keys and values fixed.

Cross-attention (attn2 in diffusers) is the only part of the UNet that reads the text:
its key and value projections map token states (L, D) to keys and values. Training only
to_k and to_v leaves every prompt that lacks the concept's tokens able to change only
through these shared maps.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from torch.nn.utils import parametrize

from mimmu.errors import MimmuError


class LowRankDelta(nn.Module):
    """Parametrization W = W_0 + B A with A (rank, in) and B (out, rank); B starts at zero."""

    def __init__(self, out_features: int, in_features: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.randn(rank, in_features, generator=generator) / rank)
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.lora_B @ self.lora_A).to(weight.dtype)


def cross_attention_linears(
    unet: UNet2DConditionModel, which: tuple[str, ...] = ("to_k", "to_v")
) -> dict[str, nn.Linear]:
    """Return the named linear layers `which` of every cross-attention block, e.g. 'down_blocks.0...attn2.to_k'."""
    layers = {}
    for name, module in unet.named_modules():
        if name.endswith(".attn2"):
            for part in which:
                # to_out is a ModuleList (linear, dropout); its linear layer is "to_out.0".
                key, layer = (
                    (f"{name}.to_out.0", module.to_out[0])
                    if part == "to_out"
                    else (f"{name}.{part}", getattr(module, part))
                )
                layers[key] = layer
    if not layers:
        raise ValueError("the UNet has no cross-attention (attn2) blocks; it cannot be conditioned on text")
    return layers


def select_trainable(
    unet: UNet2DConditionModel, trainable: str, lora_rank: int, generator: torch.Generator
) -> dict[str, nn.Parameter]:
    """Freeze the UNet and return the parameters an erasure trains, by name.

    "kv": weights of attn2.to_k and attn2.to_v. "attn2": every weight and bias of attn2.
    "lora_kv": low-rank factors on attn2.to_k and attn2.to_v, registered as parametrizations.
    """
    unet.requires_grad_(False)
    parameters: dict[str, nn.Parameter] = {}
    if trainable == "attn2":
        layers = cross_attention_linears(unet, ("to_q", "to_k", "to_v", "to_out"))
        for name, layer in layers.items():
            for key, parameter in layer.named_parameters(recurse=False):
                parameters[f"{name}.{key}"] = parameter
    elif trainable == "kv":
        for name, layer in cross_attention_linears(unet).items():
            parameters[f"{name}.weight"] = layer.weight
    else:
        for name, layer in cross_attention_linears(unet).items():
            delta = LowRankDelta(layer.out_features, layer.in_features, lora_rank, generator)
            delta.to(device=layer.weight.device, dtype=torch.float32)
            parametrize.register_parametrization(layer, "weight", delta)
            parameters[f"{name}.weight.lora_A"] = delta.lora_A
            parameters[f"{name}.weight.lora_B"] = delta.lora_B
    for parameter in parameters.values():
        parameter.requires_grad_(True)
    return parameters


def bake_low_rank(unet: UNet2DConditionModel) -> None:
    """Fold every low-rank parametrization into its weight and remove it."""
    for module in unet.modules():
        if isinstance(module, nn.Linear) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def row_span(states: torch.Tensor, tolerance: float = 1e-5) -> torch.Tensor:
    """Return orthonormal rows (rank, D) spanning the rows of `states` (N, D), up to a relative tolerance."""
    _, singular_values, basis = torch.linalg.svd(states.double(), full_matrices=False)
    rank = int((singular_values > tolerance * singular_values.max()).sum())
    return basis[:rank]


def principal_directions(states: torch.Tensor, energy_share: float) -> torch.Tensor:
    """Return the fewest top right singular vectors (k, D) of `states` (N, D) that hold `energy_share` of its energy.

    With singular values s_1 >= s_2 >= ..., k = min{k : sum_{i<=k} s_i^2 >= energy_share * sum_i s_i^2}.
    The states are not centred: the energy is sum ||state||^2, so a direction every
    token shares (the mean state) counts with its full weight.
    """
    _, singular_values, basis = torch.linalg.svd(states.double(), full_matrices=False)
    cumulative = (singular_values**2).cumsum(0) / (singular_values**2).sum()
    count = int((cumulative < energy_share).sum()) + 1
    return basis[: min(count, len(singular_values))]


def complement_projector(directions: torch.Tensor, preserved: str, fix: str) -> torch.Tensor:
    """Return P (D, D) projecting onto the orthogonal complement of the rows of `directions` (k, D).

    For an update dW of to_k or to_v, (dW P) e = 0 for every e in the span of the rows, so
    the keys and values of token states in that span do not change. `preserved` names
    those states and `fix` the option to change, for the error raised when they span
    every dimension.
    """
    span = row_span(directions)
    dimensions = directions.shape[1]
    if len(span) >= dimensions:
        raise MimmuError(
            f"{preserved} span all {dimensions} embedding dimensions, so the projection would forbid every update; "
            f"{fix}"
        )
    return (torch.eye(dimensions, dtype=torch.float64) - span.T @ span).float()


def preservation_projector(
    null_states: torch.Tensor, anchor_states: torch.Tensor, preserve_null: bool, preserve_anchors: float
) -> torch.Tensor | None:
    """Return the projector (D, D) that the preservation options ask of every to_k and to_v update, or None.

    null_states (L, D) are the empty prompt's token states, every position. anchor_states
    (M, D) are the token states of the anchors to keep. `preserve_null` protects the span
    of null_states exactly; `preserve_anchors`, a share of energy, protects the principal
    directions of anchor_states and null_states together that hold that share.
    """
    directions, preserved, fixes = [], [], []
    if preserve_null:
        directions.append(row_span(null_states.double()))
        preserved.append("the empty prompt's token states")
        fixes.append("pass --no-preserve-null")
    if preserve_anchors:
        states = torch.cat([anchor_states.double(), null_states.double()])
        directions.append(principal_directions(states, preserve_anchors))
        preserved.append(f"the principal directions of the anchor prompts' token states ({preserve_anchors})")
        fixes.append("pass a lower --preserve-anchors")
    if not directions:
        return None
    return complement_projector(torch.cat(directions), " and ".join(preserved), " or ".join(fixes))


class UpdateProjection:
    """Projection that keeps W - W_0 of to_k and to_v (or the A factor of an adapter) inside a projector's range.

    W - W_0 as a whole is projected after each step, which equals projecting every step's
    update, since P P = P.
    """

    def __init__(self, parameters: dict[str, nn.Parameter], projector: torch.Tensor) -> None:
        self.projector = projector
        self.targets = {
            name: parameter
            for name, parameter in parameters.items()
            if name.endswith(("to_k.weight", "to_v.weight", "to_k.weight.lora_A", "to_v.weight.lora_A"))
        }
        self.initial = {name: p.detach().clone() for name, p in self.targets.items() if not name.endswith("lora_A")}
        self._on_device: dict[torch.device, torch.Tensor] = {}
        self.apply()  # an adapter's random A factor starts inside the range too

    @torch.no_grad()
    def apply(self) -> None:
        """Project every tracked update in place; call after each optimizer step."""
        for name, parameter in self.targets.items():
            if parameter.device not in self._on_device:
                self._on_device[parameter.device] = self.projector.to(parameter.device, torch.float32)
            projector = self._on_device[parameter.device]
            if name.endswith("lora_A"):
                parameter.copy_((parameter.float() @ projector).to(parameter.dtype))
            else:
                start = self.initial[name]
                delta = (parameter.float() - start.float()) @ projector
                parameter.copy_((start.float() + delta).to(parameter.dtype))
