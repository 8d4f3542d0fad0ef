"""End-to-end runs of launch.py: built-in data, real COCO data, resume, several devices and config errors."""

import json
import os

import numpy as np
import pytest

from conftest import TINY_RUN_OVERRIDES, coco_mini_root, run_launch

METRIC_KEYS = {
    f"{direction}/{name}"
    for direction in ("i2t", "t2i")
    for name in ("R@1", "R@5", "R@10", "mean_rank", "median_rank", "mAP")
}


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def assert_succeeded(result):
    assert result.returncode == 0, f"launch.py failed:\n{result.stderr[-4000:]}"


def test_builtin_run_trains_evaluates_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    first = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=4", "--config.eval.every_steps=2",
                       "--config.checkpoint.every_steps=2")
    assert_succeeded(first)

    with open(workdir / "train.log", encoding="utf-8") as file:
        first_line = file.readline()
    assert "Using built-in data" in first_line

    result = read_json(workdir / "eval_test.json")
    assert METRIC_KEYS | {"rsum", "step", "split", "num_images", "num_captions", "image_size"} == set(result)
    assert result["step"] == 4
    assert result["split"] == "test"
    assert result["num_images"] == 7
    assert result["num_captions"] == 35
    assert read_json(workdir / "eval_val.json")["step"] == 2
    assert (workdir / "tokenizer.json").is_file()
    assert sorted(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()) == [2, 4]

    train_records = [record for record in read_metrics(workdir) if record["split"] == "train"]
    assert [record["step"] for record in train_records] == [2, 4]
    for key in ("loss", "mae_loss", "mlm_loss", "contrastive_loss", "learning_rate", "images_per_second",
                "eta_seconds"):
        assert key in train_records[-1]

    second = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=6", "--config.eval.every_steps=2",
                        "--config.checkpoint.every_steps=2")
    assert_succeeded(second)
    assert "Resumed from the checkpoint of step 4" in second.stderr
    assert read_json(workdir / "eval_test.json")["step"] == 6
    train_steps = [record["step"] for record in read_metrics(workdir) if record["split"] == "train"]
    assert train_steps == [2, 4, 6]


def test_coco_mini_run_writes_test_metrics(tmp_path):
    root = coco_mini_root()
    workdir = tmp_path / "coco"
    result = run_launch(workdir, *TINY_RUN_OVERRIDES, f"--config.data.root={root}", "--config.train.num_steps=3",
                        "--config.eval.every_steps=0", "--config.checkpoint.every_steps=0")
    assert_succeeded(result)
    assert "Using COCO Karpathy data" in result.stderr

    metrics = read_json(workdir / "eval_test.json")
    assert metrics["num_images"] == 20
    assert metrics["num_captions"] == 100
    assert metrics["step"] == 3
    for key in METRIC_KEYS:
        assert metrics[key] == pytest.approx(metrics[key])  # Finite, not NaN.
    assert 0.0 <= metrics["rsum"] <= 600.0


def test_eight_devices_then_one_device_resume(tmp_path):
    workdir = tmp_path / "mesh"
    first = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=2", "--config.eval.every_steps=0",
                       devices=8)
    assert_succeeded(first)
    assert "over 8 devices" in first.stderr
    assert read_json(workdir / "eval_test.json")["step"] == 2

    second = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=3", "--config.eval.every_steps=0",
                        devices=1)
    assert_succeeded(second)
    assert "Resumed from the checkpoint of step 2" in second.stderr
    assert read_json(workdir / "eval_test.json")["step"] == 3


def test_batch_not_divisible_by_devices_fails(tmp_path):
    result = run_launch(tmp_path / "bad", *TINY_RUN_OVERRIDES, "--config.train.batch_size=12",
                        "--config.train.num_steps=1", devices=8)
    assert result.returncode != 0
    assert "train.batch_size 12 must be divisible by the number of devices (8)" in result.stderr


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--config.train.nmu_steps=5", "nmu_steps"),
        ("--config.train.num_steps=ten", "num_steps"),
        ("--config.data.root=3", None),
    ],
)
def test_config_override_errors(tmp_path, override, expected):
    workdir = tmp_path / "config"
    result = run_launch(workdir, override, "--config.train.num_steps=0")
    if expected is None:
        # A number is a valid string for a path; the run then fails on the missing folder, naming it.
        assert result.returncode != 0
        assert "3" in result.stderr
        return
    assert result.returncode != 0
    assert expected in result.stderr
    assert not (workdir / "checkpoints").exists()


def test_missing_data_root_names_folder(tmp_path):
    missing = tmp_path / "no_such_dataset"
    result = run_launch(tmp_path / "run", *TINY_RUN_OVERRIDES, f"--config.data.root={missing}",
                        "--config.train.num_steps=1")
    assert result.returncode != 0
    assert str(missing) in result.stderr


def test_eval_only_reproduces_training_metrics_across_device_counts(tmp_path):
    workdir = tmp_path / "eval"
    # 7 test images and 35 captions over 8 devices: the last evaluation batches are padded.
    trained = run_launch(workdir, *TINY_RUN_OVERRIDES, "--config.train.num_steps=2", "--config.eval.every_steps=0",
                         "--config.checkpoint.every_steps=1", devices=8)
    assert_succeeded(trained)
    training_metrics = read_json(workdir / "eval_test.json")
    os.remove(workdir / "eval_test.json")

    single = run_launch(workdir, *TINY_RUN_OVERRIDES, "--mode=eval", "--config.eval.export_embeddings=True",
                        devices=1)
    assert_succeeded(single)
    single_metrics = read_json(workdir / "eval_test.json")
    assert single_metrics["step"] == 2
    for key in METRIC_KEYS | {"rsum", "num_images", "num_captions"}:
        assert single_metrics[key] == pytest.approx(training_metrics[key], abs=1e-6), key
    assert "Restoring the parameters of step 2" in single.stderr

    with np.load(workdir / "embeddings_test_step2.npz") as exported:
        assert exported["image_embeddings"].shape == (7, 16)
        assert exported["text_embeddings"].shape == (35, 16)
        assert exported["caption_to_image"].tolist() == np.repeat(np.arange(7), 5).tolist()
        assert len(exported["image_ids"]) == 7
        assert len(exported["captions"]) == 35

    other_model = run_launch(workdir, *TINY_RUN_OVERRIDES, "--mode=eval", "--config.model.embed_dim=24")
    assert other_model.returncode != 0
    assert "config.model.embed_dim: checkpoint 16, config 24" in other_model.stderr

    by_path = run_launch(workdir, *TINY_RUN_OVERRIDES, "--mode=eval", "--config.eval.split=val",
                         f"--checkpoint={workdir / 'checkpoints' / '1'}", devices=8)
    assert_succeeded(by_path)
    val_metrics = read_json(workdir / "eval_val.json")
    assert val_metrics["step"] == 1
    assert val_metrics["split"] == "val"
    assert val_metrics["num_images"] == 6


def test_eval_only_without_checkpoint_fails(tmp_path):
    result = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=eval")
    assert result.returncode != 0
    assert "no checkpoints folder" in result.stderr

    missing_step = run_launch(tmp_path / "empty", *TINY_RUN_OVERRIDES, "--mode=eval", "--checkpoint=/no/such/7")
    assert missing_step.returncode != 0
    assert "checkpoint folder /no/such/7 does not exist" in missing_step.stderr
