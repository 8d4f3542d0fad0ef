"""Tests for MAE reconstruction grids: visible-only statistics, panels, PNG files and the launch.py paths."""

import os

import jax
import numpy as np
import PIL.Image
import pytest

from conftest import TINY_RUN_OVERRIDES, run_launch
from multimae_jax.data.tokenizer import load_tokenizer
from multimae_jax.evaluation.reconstructions import (GREY, hidden_pixel_mask, reconstruct_jit, reconstruction_panels,
                                                     visible_patch_statistics, write_reconstruction_grid)
from multimae_jax.models.multimodal_mae import MultimodalMae, StackSize
from multimae_jax.models.patch_masking import random_patch_mask
from multimae_jax.models.patches import patchify, unpatchify
from multimae_jax.training.trainer import init_params

PATCH_SIZE = 8
IMAGE_SIZE = 32
TEXT_LENGTH = 12
MASK_RATIO = 0.75
CAPTIONS = ["a red circle on a white background", "two blue squares", "a small green star at the top left",
            "a big yellow triangle"]
BATCH = len(CAPTIONS)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = CAPTIONS * 5 + ["a purple diamond below an orange circle", "three stars in a row"]
    return load_tokenizer("", training_texts=texts, cache_dir=str(tmp_path_factory.mktemp("tokenizer")),
                          vocab_size=60)


@pytest.fixture(scope="module")
def model_and_params(tokenizer):
    model = MultimodalMae(patch_size=PATCH_SIZE, vocab_size=tokenizer.vocab_size, max_text_length=TEXT_LENGTH,
                          image_stack=StackSize(32, 1, 2), text_stack=StackSize(32, 1, 2),
                          fusion_stack=StackSize(32, 1, 2), decoder_stack=StackSize(32, 1, 2), embed_dim=16,
                          use_mlm=True)
    params = jax.jit(lambda key: init_params(model, key, IMAGE_SIZE, TEXT_LENGTH))(jax.random.key(0))
    return model, params


@pytest.fixture(scope="module")
def inputs(tokenizer):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    text_ids, text_mask = tokenizer.encode(CAPTIONS, TEXT_LENGTH)
    return images, text_ids, text_mask


def _reconstruct(model_and_params, images, text_ids, text_mask, norm_pix_loss=True):
    model, params = model_and_params
    outputs = reconstruct_jit(model, params, images, jax.random.key(3), MASK_RATIO, text_ids, text_mask,
                              norm_pix_loss)
    return {name: np.asarray(value) for name, value in outputs.items()}


def _write_jpeg(path, width, height, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(path, format="JPEG")


def test_statistics_match_numpy_on_visible_patches():
    rng = np.random.default_rng(1)
    patches = rng.normal(2.0, 3.0, size=(2, 6, 12)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 1, 1]], np.float32)
    patches[mask > 0.5] = np.nan

    mean, std = visible_patch_statistics(patches, mask)

    assert mean.shape == (2, 1, 1)
    assert std.shape == (2, 1, 1)
    for row in range(2):
        visible = patches[row][mask[row] == 0]
        expected_mean = visible.mean(axis=-1).mean()
        expected_std = np.sqrt(visible.var(axis=-1) + 1e-6).mean()
        assert float(mean[row, 0, 0]) == pytest.approx(expected_mean, rel=1e-5)
        assert float(std[row, 0, 0]) == pytest.approx(expected_std, rel=1e-5)


def test_hidden_pixels_do_not_change_reconstruction(model_and_params, inputs):
    images, text_ids, text_mask = inputs
    first = _reconstruct(model_and_params, images, text_ids, text_mask)
    hidden = hidden_pixel_mask(first["mask"], PATCH_SIZE, IMAGE_SIZE, IMAGE_SIZE)[..., None]

    # Hidden patches made much brighter and higher in contrast: statistics that included them would shift.
    changed_hidden = np.where(hidden, images * 4.0 + 3.0, images).astype(np.float32)
    second = _reconstruct(model_and_params, changed_hidden, text_ids, text_mask)
    np.testing.assert_array_equal(second["mask"], first["mask"])
    np.testing.assert_array_equal(second["reconstruction"], first["reconstruction"])

    # The same change on the visible patches does reach the reconstruction, so the check above can fail.
    changed_visible = np.where(hidden, images, images * 4.0 + 3.0).astype(np.float32)
    third = _reconstruct(model_and_params, changed_visible, text_ids, text_mask)
    assert not np.allclose(third["reconstruction"], first["reconstruction"])


def test_norm_pix_applies_visible_statistics(model_and_params, inputs):
    images, text_ids, text_mask = inputs
    raw = _reconstruct(model_and_params, images, text_ids, text_mask, norm_pix_loss=False)
    normalized = _reconstruct(model_and_params, images, text_ids, text_mask, norm_pix_loss=True)
    mean, std = visible_patch_statistics(patchify(images, PATCH_SIZE), raw["mask"])

    expected = np.asarray(raw["reconstruction"]) * np.asarray(std)[:, :, :, None] + np.asarray(mean)[:, :, :, None]
    np.testing.assert_allclose(normalized["reconstruction"], expected, rtol=1e-5, atol=1e-5)
    assert raw["reconstruction"].shape == images.shape
    assert raw["mask"].sum(axis=1).tolist() == [12.0] * BATCH


def test_raw_reconstruction_reassembles_predictions(model_and_params, inputs):
    model, params = model_and_params
    images, text_ids, text_mask = inputs
    raw = _reconstruct(model_and_params, images, text_ids, text_mask, norm_pix_loss=False)

    def predict_pixels(params, images, text_ids, text_mask):
        patch_mask = random_patch_mask(jax.random.key(3), BATCH, 16, MASK_RATIO)
        outputs = model.apply({"params": params}, images, text_ids, text_mask, patch_mask, text_ids,
                              np.zeros((BATCH, 1), np.int32))
        return outputs["pixel_predictions"]

    predictions = jax.jit(predict_pixels)(params, images, text_ids, text_mask)
    expected = unpatchify(predictions, PATCH_SIZE, 4, 4)
    np.testing.assert_allclose(raw["reconstruction"], np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_panels_paste_visible_and_grey_hidden(model_and_params, inputs):
    images, text_ids, text_mask = inputs
    outputs = _reconstruct(model_and_params, images, text_ids, text_mask)
    panels = reconstruction_panels(images, outputs["reconstruction"], outputs["mask"], PATCH_SIZE)
    original, masked, reconstruction, pasted = (panels[:, index] for index in range(4))
    hidden = hidden_pixel_mask(outputs["mask"], PATCH_SIZE, IMAGE_SIZE, IMAGE_SIZE)
    visible = ~hidden

    assert panels.shape == (BATCH, 4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert panels.dtype == np.uint8
    assert hidden.sum() == BATCH * 12 * PATCH_SIZE * PATCH_SIZE
    np.testing.assert_array_equal(pasted[visible], original[visible])
    np.testing.assert_array_equal(pasted[hidden], reconstruction[hidden])
    assert np.all(masked[hidden] == GREY)
    np.testing.assert_array_equal(masked[visible], original[visible])
    # The random-weight model does not copy the input, so the reconstruction panel differs from the original.
    assert not np.array_equal(reconstruction, original)


def test_grid_png_size_and_content(model_and_params, inputs, tmp_path):
    model, params = model_and_params
    images, text_ids, text_mask = inputs
    path = tmp_path / "nested" / "folder" / "grid.png"

    grid = write_reconstruction_grid(model, params, images, str(path), key=jax.random.key(3), mask_ratio=MASK_RATIO,
                                     text_ids=text_ids, text_mask=text_mask, norm_pix_loss=True)

    assert path.is_file()
    assert os.listdir(path.parent) == ["grid.png"]
    with PIL.Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == (4 * IMAGE_SIZE, BATCH * IMAGE_SIZE)
        np.testing.assert_array_equal(np.asarray(image), grid)
    outputs = _reconstruct(model_and_params, images, text_ids, text_mask)
    panels = reconstruction_panels(images, outputs["reconstruction"], outputs["mask"], PATCH_SIZE)
    # Row 1, panel 2 (the reconstruction) sits at rows [32, 64) and columns [64, 96) of the grid.
    np.testing.assert_array_equal(grid[IMAGE_SIZE:2 * IMAGE_SIZE, 2 * IMAGE_SIZE:3 * IMAGE_SIZE], panels[1, 2])


def test_launch_writes_training_and_file_grids(tmp_path):
    workdir = tmp_path / "run"
    trained = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=2", "--config.eval.every_steps=1",
                         "--config.checkpoint.every_steps=0")
    assert trained.returncode == 0, trained.stderr[-4000:]
    with PIL.Image.open(workdir / "reconstructions" / "step_1.png") as image:
        assert image.size == (4 * 32, 6 * 32)  # 6 val images.
    with PIL.Image.open(workdir / "reconstructions" / "step_2.png") as image:
        assert image.size == (4 * 32, 7 * 32)  # 7 test images.

    first, second = tmp_path / "wide.jpg", tmp_path / "tall.jpg"
    _write_jpeg(first, 50, 30, seed=1)
    _write_jpeg(second, 20, 70, seed=2)
    result = run_launch(workdir, *TINY_RUN_OVERRIDES, "--mode=reconstruct", f"--image={first}", f"--image={second}",
                        "--caption=a red circle")
    assert result.returncode == 0, result.stderr[-4000:]
    output = workdir / "reconstructions" / "reconstruct_step_2.png"
    assert str(output) in result.stderr
    with PIL.Image.open(output) as image:
        assert image.size == (4 * 32, 2 * 32)
        grid = np.asarray(image)
    # Panel 1 (masked input) has grey hidden patches: with 12 of 16 patches hidden, most pixels are GREY.
    masked_panel = grid[:, 32:64]
    assert np.mean(np.all(masked_panel == GREY, axis=-1)) >= 0.7


def test_reconstruct_mode_errors(tmp_path):
    image = tmp_path / "photo.jpg"
    _write_jpeg(image, 40, 40, seed=3)
    missing = tmp_path / "no_such_photo.jpg"
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a JPEG file")

    no_image = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=reconstruct")
    assert no_image.returncode != 0
    assert "--mode reconstruct needs at least one --image PATH" in no_image.stderr

    missing_file = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=reconstruct", f"--image={image}",
                              f"--image={missing}")
    assert missing_file.returncode != 0
    assert f"Image file {missing} not found" in missing_file.stderr

    unreadable = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=reconstruct", f"--image={corrupt}")
    assert unreadable.returncode != 0
    assert f"--image {corrupt} cannot be decoded" in unreadable.stderr

    no_checkpoint = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=reconstruct", f"--image={image}")
    assert no_checkpoint.returncode != 0
    assert "no checkpoints folder" in no_checkpoint.stderr
