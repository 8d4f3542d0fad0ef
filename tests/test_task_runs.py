"""End-to-end runs of each task through launch.py: 30 steps on coco_mini, other data sources, other image sizes."""

import json
import os

import numpy as np
import PIL.Image
import pytest

from conftest import TINY_OVERRIDES, coco_mini_root, run_launch

RETRIEVAL_KEYS = {"t2i/R@1", "i2t/R@1", "rsum", "t2i/mAP", "i2t/mAP"}
RECONSTRUCTION_KEYS = {"mae_loss"}
MASKED_TOKEN_KEYS = {"mlm_accuracy", "mlm_perplexity", "unigram_accuracy", "unigram_perplexity",
                     "num_masked_tokens"}
EXPECTED_EVAL_KEYS = {
    "mae": RECONSTRUCTION_KEYS,
    "mlm": MASKED_TOKEN_KEYS,
    "mmae": RETRIEVAL_KEYS | RECONSTRUCTION_KEYS | MASKED_TOKEN_KEYS,
    "fusion": RETRIEVAL_KEYS,
}
# Keys each task must not report: a task evaluates only what its heads support.
ABSENT_EVAL_KEYS = {
    "mae": RETRIEVAL_KEYS | MASKED_TOKEN_KEYS,
    "mlm": RETRIEVAL_KEYS | RECONSTRUCTION_KEYS,
    "mmae": set(),
    "fusion": RECONSTRUCTION_KEYS | MASKED_TOKEN_KEYS,
}
TRAIN_LOSSES = {"mae": {"mae_loss"}, "mlm": {"mlm_loss"}, "mmae": {"mae_loss", "mlm_loss", "contrastive_loss"},
                "fusion": {"mae_loss", "mlm_loss", "contrastive_loss"}}


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def train_records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as file:
        return [record for record in map(json.loads, file) if record["split"] == "train"]


def assert_succeeded(result):
    assert result.returncode == 0, f"launch.py failed:\n{result.stderr[-4000:]}"


@pytest.mark.parametrize("task", ["mae", "mlm", "mmae", "fusion"])
def test_task_trains_30_steps_on_coco_mini(tmp_path, task):
    root = coco_mini_root()
    workdir = tmp_path / task
    result = run_launch(workdir, *TINY_OVERRIDES[task], f"--config.data.root={root}", "--config.train.num_steps=30",
                        "--config.train.log_every_steps=5", "--config.eval.every_steps=15",
                        "--config.checkpoint.every_steps=0", task=task)
    assert_succeeded(result)
    assert "Using COCO Karpathy data" in result.stderr
    assert f"Task {task}:" in result.stderr

    records = train_records(workdir)
    assert [record["step"] for record in records] == [5, 10, 15, 20, 25, 30]
    assert TRAIN_LOSSES[task] <= set(records[-1])
    assert records[-1]["loss"] < records[0]["loss"], [record["loss"] for record in records]

    for split, step in (("val", 15), ("test", 30)):
        metrics = read_json(workdir / f"eval_{split}.json")
        assert metrics["step"] == step
        assert EXPECTED_EVAL_KEYS[task] <= set(metrics)
        assert not ABSENT_EVAL_KEYS[task] & set(metrics)
        assert all(np.isfinite(value) for value in metrics.values() if isinstance(value, float))

    reconstructions = workdir / "reconstructions"
    if task == "mlm":
        assert not reconstructions.exists()
    else:
        assert sorted(os.listdir(reconstructions)) == ["step_15.png", "step_30.png"]


def test_mlm_beats_unigram_baseline_on_builtin_captions(tmp_path):
    workdir = tmp_path / "mlm"
    result = run_launch(workdir, *TINY_OVERRIDES["mlm"], "--config.train.num_steps=200",
                        "--config.data.builtin_train_images=200", "--config.data.builtin_test_images=40",
                        "--config.eval.every_steps=0",
                        "--config.checkpoint.every_steps=0", "--config.train.batch_size=32", task="mlm")
    assert_succeeded(result)
    metrics = read_json(workdir / "eval_test.json")
    assert metrics["mlm_accuracy"] > metrics["unigram_accuracy"]
    assert metrics["mlm_perplexity"] < metrics["unigram_perplexity"]
    assert metrics["mlm_perplexity"] == pytest.approx(np.exp(metrics["mlm_loss"]))


def _write_photos(folder, count):
    rng = np.random.default_rng(0)
    for index in range(count):
        subfolder = folder / f"album{index % 3}"
        subfolder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(40 + index, 56, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(subfolder / f"photo{index}.{'png' if index % 2 else 'jpg'}")


def test_mae_trains_from_image_folder(tmp_path):
    _write_photos(tmp_path / "photos", 24)
    workdir = tmp_path / "run"
    result = run_launch(workdir, *TINY_OVERRIDES["mae"], f"--config.data.image_dir={tmp_path / 'photos'}",
                        "--config.data.heldout_fraction=0.25", "--config.train.num_steps=3",
                        "--config.eval.every_steps=0", "--config.checkpoint.every_steps=0", task="mae")
    assert_succeeded(result)
    assert "Using the images under" in result.stderr
    assert "config.loss.mask_ratio" not in result.stderr

    metrics = read_json(workdir / "eval_val.json")
    assert metrics["split"] == "val"
    assert 1 <= metrics["num_images"] < 24
    assert np.isfinite(metrics["mae_loss"])
    assert (workdir / "reconstructions" / "step_3.png").is_file()


def test_mlm_trains_from_text_file(tmp_path):
    lines = [f"line {index} says the {colour} kite flies over {place}" for index, (colour, place) in
             enumerate([("red", "the sea"), ("blue", "a hill"), ("green", "the town"), ("white", "a lake")] * 10)]
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    workdir = tmp_path / "run"
    result = run_launch(workdir, *TINY_OVERRIDES["mlm"], f"--config.data.text_file={text_file}",
                        "--config.data.heldout_fraction=0.2", "--config.train.num_steps=3",
                        "--config.eval.every_steps=0", "--config.checkpoint.every_steps=0", task="mlm")
    assert_succeeded(result)
    assert f"Using the lines of {text_file}" in result.stderr

    metrics = read_json(workdir / "eval_val.json")
    assert 1 <= metrics["num_texts"] < len(lines)
    assert 0.0 <= metrics["mlm_accuracy"] <= 1.0
    assert metrics["num_masked_tokens"] >= metrics["num_texts"]


def test_image_folder_is_rejected_by_tasks_with_text(tmp_path):
    result = run_launch(tmp_path / "run", *TINY_OVERRIDES["mmae"], f"--config.data.image_dir={tmp_path}",
                        task="mmae")
    assert result.returncode != 0
    assert "config.data.image_dir is not a field of this config file. It is a field of the mae task" in result.stderr


def test_two_data_sources_are_rejected(tmp_path):
    result = run_launch(tmp_path / "run", *TINY_OVERRIDES["mae"], f"--config.data.image_dir={tmp_path}",
                        "--config.data.root=/data/coco", task="mae")
    assert result.returncode != 0
    assert "only one data source may be set, got root, image_dir" in result.stderr


def test_mae_checkpoint_evaluates_and_reconstructs_at_other_sizes(tmp_path):
    workdir = tmp_path / "run"
    trained = run_launch(workdir, *TINY_OVERRIDES["mae"], "--config.train.num_steps=2", "--config.eval.every_steps=0",
                         "--config.checkpoint.every_steps=0", task="mae")
    assert_succeeded(trained)
    at_training_size = read_json(workdir / "eval_test.json")

    again = run_launch(workdir, *TINY_OVERRIDES["mae"], "--mode=eval", task="mae")
    assert_succeeded(again)
    assert read_json(workdir / "eval_test.json")["mae_loss"] == pytest.approx(at_training_size["mae_loss"], rel=1e-6)

    larger = run_launch(workdir, *TINY_OVERRIDES["mae"], "--mode=eval", "--config.data.image_size=48", task="mae")
    assert_succeeded(larger)
    at_48 = read_json(workdir / "eval_test.json")
    assert np.isfinite(at_48["mae_loss"])
    assert at_48["image_size"] == 48
    assert at_48["checkpoint"] == str(workdir / "checkpoints" / "2")
    assert "config.data.image_size: checkpoint 32, config 48" in larger.stderr
    with PIL.Image.open(workdir / "reconstructions" / "eval_test_step_2.png") as image:
        assert image.size == (4 * 48, 7 * 48)
    with PIL.Image.open(workdir / "reconstructions" / "step_2.png") as image:
        assert image.size == (4 * 32, 7 * 32)

    photo = tmp_path / "wide.png"
    PIL.Image.fromarray(np.full((30, 60, 3), 90, np.uint8)).save(photo)
    grid = run_launch(workdir, *TINY_OVERRIDES["mae"], "--mode=reconstruct", f"--image={photo}",
                      "--config.data.image_size=64", task="mae")
    assert_succeeded(grid)
    with PIL.Image.open(workdir / "reconstructions" / "reconstruct_step_2.png") as image:
        assert image.size == (4 * 64, 64)


def test_checkpoint_of_another_task_is_rejected(tmp_path):
    workdir = tmp_path / "run"
    assert_succeeded(run_launch(workdir, *TINY_OVERRIDES["mlm"], "--config.train.num_steps=1",
                                "--config.eval.every_steps=0", "--config.checkpoint.every_steps=0", task="mlm"))

    evaluated = run_launch(workdir, *TINY_OVERRIDES["mae"], "--mode=eval", task="mae")
    assert evaluated.returncode != 0
    assert "was trained by task 'mlm', but the config is for task 'mae'" in evaluated.stderr

    resumed = run_launch(workdir, *TINY_OVERRIDES["mae"], "--config.train.num_steps=2", task="mae")
    assert resumed.returncode != 0
    assert "was trained by task 'mlm', but the config is for task 'mae'" in resumed.stderr

    reconstructed = run_launch(workdir, *TINY_OVERRIDES["mlm"], "--mode=reconstruct", f"--image={workdir}/x.png",
                               task="mlm")
    assert reconstructed.returncode != 0
    assert "task 'mlm' has no MAE decoder" in reconstructed.stderr


def test_mmae_on_eight_devices_matches_single_device_evaluation(tmp_path):
    workdir = tmp_path / "run"
    trained = run_launch(workdir, *TINY_OVERRIDES["mmae"], "--config.train.num_steps=2", "--config.eval.every_steps=0",
                         "--config.checkpoint.every_steps=0", task="mmae", devices=8)
    assert_succeeded(trained)
    on_eight = read_json(workdir / "eval_test.json")

    evaluated = run_launch(workdir, *TINY_OVERRIDES["mmae"], "--mode=eval", task="mmae", devices=1)
    assert_succeeded(evaluated)
    on_one = read_json(workdir / "eval_test.json")

    for key in ("mae_loss", "mlm_accuracy", "mlm_loss", "unigram_accuracy", "t2i/R@1", "i2t/mAP"):
        assert on_one[key] == pytest.approx(on_eight[key], rel=1e-5, abs=1e-6), key
    assert on_one["num_masked_tokens"] == on_eight["num_masked_tokens"]


def test_misplaced_override_names_the_task_config(tmp_path):
    result = run_launch(tmp_path / "run", *TINY_OVERRIDES["mlm"], "--config.data.image_dir=/data/photos", task="mlm")
    assert result.returncode == 1
    assert ("--config.data.image_dir: config.data.image_dir is not a field of this config file. It is a field of "
            "the mae task config (configs/mae.py).") in result.stderr
    assert "Traceback" not in result.stderr

    misspelt = run_launch(tmp_path / "run", *TINY_OVERRIDES["mlm"], "--config.train.num_step=3", task="mlm")
    assert misspelt.returncode == 1
    assert "config.train.num_step is not a field of this config file; did you mean 'num_steps'?" in misspelt.stderr


def test_input_errors_print_no_traceback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_launch(tmp_path / "run", *TINY_OVERRIDES["mae"], f"--config.data.image_dir={empty}", task="mae")
    assert result.returncode == 1
    assert f"Image folder {empty} contains no image file" in result.stderr
    assert "Traceback" not in result.stderr
    with open(tmp_path / "run" / "train.log", encoding="utf-8") as log:
        assert "Traceback" in log.read()
