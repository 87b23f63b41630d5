"""Mixed precision, checkpoints of both trainers, and the prompt set an erasure trains on."""

from __future__ import annotations

import pytest
import torch

from mimmu.artifact import load_erased_weights
from mimmu.baselines.esd import EsdTrainer
from mimmu.checkpoints import latest_checkpoint, load_checkpoint
from mimmu.concept_tokens import WEIGHT_PREFIX
from mimmu.config import EraseConfig
from mimmu.erase import erase
from mimmu.errors import MimmuError
from mimmu.forgetting_set import build_forgetting_set
from mimmu.io import write_json_atomic
from mimmu.lifecycle import load_prompt_set
from mimmu.loading import load_pipeline
from mimmu.prompt_sets import build_prompt_set
from mimmu.trainer import MimmuTrainer

SMALL = {
    "forgetting_size": 8,
    "epochs": 2,
    "batch_size": 4,
    "esd_sampling_steps": 3,
    "mi_check_every": 1,
    "trainable": "kv",  # the UNet path; tests/test_concept_tokens.py covers the token rows
}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))


def _forgetting_set(pipeline, size=8):
    from mimmu.home import state_dir

    prompt_set = build_prompt_set(["star"], "context", size, seed=0)
    return build_forgetting_set(pipeline, prompt_set.forgetting, "test", state_dir() / "fs", progress=False)


def _trained(pipeline) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pipeline.unet.state_dict().items() if ".attn2." in k}


@pytest.mark.parametrize(("method", "trainable"), [("mimmu", "kv"), ("mimmu", "tokens"), ("esd", None)])
def test_bfloat16_erasure_trains_float32_weights(tiny_sd_dir, tmp_path, method, trainable):
    """The mixed-precision path (a half-precision model, float32 trained weights, autocast) on the CPU."""
    base = load_pipeline(tiny_sd_dir, device="cpu", dtype="bfloat16")
    table = base.text_encoder.get_input_embeddings().weight
    before = {k: v.float() for k, v in _trained(base).items()}
    before.update({f"{WEIGHT_PREFIX}{token}": table[token].float() for token in range(len(table))})
    out = tmp_path / method
    config = EraseConfig(**{**SMALL, "method": method, "trainable": trainable})
    result = erase(str(tiny_sd_dir), ["star"], config, out, dtype="bfloat16", progress=False)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    if method == "mimmu":
        assert [entry["epoch"] for entry in result.mi] == [1, 2]  # the MI check runs under autocast too
    record, weights = load_erased_weights(out)
    assert record["device"] == "cpu"
    assert record["peak_memory_mb"] > 0
    assert all(value.dtype == torch.float32 for value in weights.values())
    assert any(name.startswith(WEIGHT_PREFIX) for name in weights) == (trainable == "tokens")
    moved = [name for name, value in weights.items() if not torch.equal(value, before[name])]
    assert moved, "no trained weight changed"


def test_esd_resume_matches_uninterrupted(tiny_sd_dir, tmp_path):
    config = EraseConfig(**{**SMALL, "method": "esd", "trainable": None, "epochs": 4, "checkpoint_every": 1})
    prompts = build_prompt_set(["star"], "context", 8, seed=0).forgetting
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    full = EsdTrainer(pipeline, prompts, config).train(tmp_path / "full", progress=False)
    expected = _trained(pipeline)

    class Interrupt(Exception):
        pass

    def stop_after_five(step, loss):  # two epochs are four steps, so the checkpoint of epoch 2 is the newest
        if step == 5:
            raise Interrupt

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    with pytest.raises(Interrupt):
        EsdTrainer(pipeline, prompts, config).train(tmp_path / "resumed", progress=False, callback=stop_after_five)
    assert latest_checkpoint(tmp_path / "resumed").name == "epoch-0002"

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    resumed = EsdTrainer(pipeline, prompts, config).train(tmp_path / "resumed", progress=False)
    assert resumed.losses == pytest.approx(full.losses, rel=1e-5)
    for name, value in expected.items():
        torch.testing.assert_close(pipeline.unet.state_dict()[name], value, atol=1e-6, rtol=1e-5)


def test_checkpoints_keep_two_newest(tiny_sd_dir, tmp_path):
    config = EraseConfig(**{**SMALL, "epochs": 4, "checkpoint_every": 1})
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    MimmuTrainer(pipeline, _forgetting_set(pipeline), config).train(tmp_path / "c", progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["epoch-0003", "epoch-0004"]


def test_resume_after_early_stop(tiny_sd_dir, tmp_path):
    # Any MI is above 0 and below 1e9 nats, so the run stops after its first check (epoch 1).
    config = EraseConfig(**{**SMALL, "epochs": 5, "checkpoint_every": 3, "mi_tolerance": 1e9})
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    history = MimmuTrainer(pipeline, forgetting_set, config).train(tmp_path / "c", progress=False)
    assert history.stopped_early and len(history.losses) == 2  # one epoch: 8 latents in batches of 4
    expected = _trained(pipeline)
    tensors, meta = load_checkpoint(latest_checkpoint(tmp_path / "c"))
    assert meta["epoch"] == 1
    assert meta["stopped_early"] is True

    # As if the process died before the artifact was written: resuming must not train on.
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    resumed = MimmuTrainer(pipeline, forgetting_set, config).train(tmp_path / "c", progress=False)
    assert resumed.stopped_early and resumed.losses == history.losses
    for name, value in expected.items():
        assert torch.equal(pipeline.unet.state_dict()[name], value), name


def test_erase_uses_given_prompt_set(tiny_sd_dir, tmp_path):
    curated = build_prompt_set(["star"], "context", 4, seed=7)
    curated.forgetting = curated.forgetting[:3]
    out = tmp_path / "erased"
    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), out, progress=False, prompt_set=curated)
    written = load_prompt_set(out / "prompt_set.json")
    assert [p.prompt for p in written.forgetting] == [p.prompt for p in curated.forgetting]
    # A drawn set of the configuration would have 8 prompts from seed 0.
    assert len(build_prompt_set(["star"], "context", 8, seed=0).forgetting) == 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concepts": ["red"]}, r"prompt set is for \['red'\], not \['star'\]"),
        ({"anchor_mode": "empty"}, "has 'empty' anchors but the configuration asks for 'context'"),
        ({"forgetting": []}, "has no forgetting prompts"),
    ],
)
def test_erase_rejects_mismatched_prompt_set(tiny_sd_dir, tmp_path, change, message):
    prompt_set = build_prompt_set(["star"], "context", 4, seed=0)
    for key, value in change.items():
        setattr(prompt_set, key, value)
    with pytest.raises(MimmuError, match=message):
        erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), tmp_path / "out", progress=False, prompt_set=prompt_set)


def test_interrupted_output_folder_resumes(tiny_sd_dir, tmp_path):
    """What a run writes before erasure.json (training.json, prompt_set.json) does not block its rerun."""
    out = tmp_path / "out"
    out.mkdir()
    write_json_atomic(out / "training.json", {"losses": []})
    write_json_atomic(out / "prompt_set.json", {})
    (out / ".training.json.abc.tmp").write_text("")
    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), out, progress=False)
    with pytest.raises(MimmuError, match="already contains an erased model"):
        erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), out, progress=False)
    # --overwrite replaces an erased model, but never mixes it with files of someone else's.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MimmuError, match=r"contains files an erasure does not write \(notes.txt\)"):
        erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), out, progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
