"""load_pipeline on the embedded model and on diffusers directories."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import BertModel, CLIPTextModel

from mimmu.errors import MimmuError
from mimmu.loading import load_pipeline, sampling_defaults
from mimmu.text_encoder import MAX_LENGTH, encode_prompts


def _convert_unet_to_pickle(folder):
    unet = folder / "unet"
    weights = unet / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), unet / "diffusion_pytorch_model.bin")
    weights.unlink()


def test_minicanvas_is_stable_diffusion_pipeline(minicanvas_pipeline):
    assert isinstance(minicanvas_pipeline, StableDiffusionPipeline)
    assert isinstance(minicanvas_pipeline.text_encoder, BertModel)
    assert minicanvas_pipeline.tokenizer.model_max_length == MAX_LENGTH
    assert minicanvas_pipeline.device.type == "cpu"
    assert minicanvas_pipeline.unet.dtype == torch.float32
    assert minicanvas_pipeline.vae_scale_factor == 4


def test_minicanvas_text_encoder_frozen(minicanvas_pipeline):
    assert not any(p.requires_grad for p in minicanvas_pipeline.text_encoder.parameters())


def test_minicanvas_sampling_defaults(minicanvas_pipeline):
    defaults = sampling_defaults(minicanvas_pipeline)
    assert defaults.num_inference_steps < 50
    assert defaults.guidance_scale > 1.0


def test_minicanvas_load_is_quiet(recwarn):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # diffusers' library logger does not propagate, so a handler on it records what users would get.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    library_logger = logging.getLogger("diffusers")
    library_logger.addHandler(handler)
    before = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    try:
        load_pipeline("minicanvas", device="cpu")
    finally:
        library_logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if "Expected types" in r.getMessage()]
    assert not [str(w.message) for w in recwarn if "torch_dtype" in str(w.message)]
    assert (diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()) == before
    assert diffusers_logging.is_progress_bar_enabled()
    assert transformers_logging.is_progress_bar_enabled()


def test_encode_prompts_matches_pipeline(minicanvas_pipeline):
    prompts = ["a red star", "", "a picture of a striped blue lightning bolt"]
    ours = encode_prompts(minicanvas_pipeline.tokenizer, minicanvas_pipeline.text_encoder, prompts)
    theirs, _ = minicanvas_pipeline.encode_prompt(prompts, "cpu", 1, False)
    assert ours.shape == (3, MAX_LENGTH, 384)
    torch.testing.assert_close(ours, theirs)


def test_tiny_directory_loads(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    assert isinstance(pipeline, StableDiffusionPipeline)
    assert isinstance(pipeline.text_encoder, CLIPTextModel)
    assert sampling_defaults(pipeline).num_inference_steps == 50


def test_dtype_override(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu", dtype="bfloat16")
    assert pipeline.unet.dtype == torch.bfloat16
    assert pipeline.text_encoder.dtype == torch.bfloat16


def test_pickle_rejected_without_flag(tiny_sd_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd_dir, folder)
    _convert_unet_to_pickle(folder)
    with pytest.raises(MimmuError, match=r"diffusion_pytorch_model\.bin is a pickle-based weight file"):
        load_pipeline(folder, device="cpu")


def test_pickle_loads_with_flag(tiny_sd_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd_dir, folder)
    _convert_unet_to_pickle(folder)
    pipeline = load_pipeline(folder, device="cpu", allow_pickle=True)
    reference = load_pipeline(tiny_sd_dir, device="cpu")
    for (name, ours), (_, theirs) in zip(
        pipeline.unet.state_dict().items(), reference.unet.state_dict().items(), strict=True
    ):
        assert torch.equal(ours, theirs), name


@pytest.mark.parametrize("source", ["minicanva", "", "stable-diffusion-v1-5"])
def test_unknown_model_name(source):
    with pytest.raises(MimmuError, match="'minicanvas'"):
        load_pipeline(source)


def test_missing_directory(tmp_path):
    with pytest.raises(MimmuError, match="neither 'minicanvas' nor an existing path"):
        load_pipeline(tmp_path / "absent")


def test_directory_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(MimmuError, match="neither a diffusers pipeline directory"):
        load_pipeline(tmp_path)


def test_file_instead_of_directory(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(MimmuError, match="neither a diffusers pipeline directory"):
        load_pipeline(file)


def test_invalid_device_and_dtype():
    with pytest.raises(MimmuError, match="invalid dtype 'float8'"):
        load_pipeline("minicanvas", device="cpu", dtype="float8")
    with pytest.raises(MimmuError, match="float16 is not supported on the CPU"):
        load_pipeline("minicanvas", device="cpu", dtype="float16")
    with pytest.raises(MimmuError, match="invalid device 'gpu0'"):
        load_pipeline("minicanvas", device="gpu0")
