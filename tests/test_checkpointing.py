"""Orbax checkpoints written to disk: save, keep the newest, restore into shardings, ignore unfinished saves."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimae_jax.training import sharding
from multimae_jax.training.checkpointing import Checkpointer
from multimae_jax.training.train_state import TrainState
from multimae_jax.training.trainer import abstract_with_shardings


def make_state(step: int, scale: float) -> TrainState:
    params = {"dense": {"kernel": jnp.full((3, 4), scale), "bias": jnp.arange(4.0) * scale}}
    opt_state = {"count": jnp.asarray(step, jnp.int32), "moment": jnp.ones((3, 4)) * scale / 2}
    return TrainState(step=jnp.asarray(step, jnp.int32), params=params, opt_state=opt_state)


def abstract_state(state: TrainState) -> TrainState:
    mesh = sharding.make_mesh()
    shardings = jax.tree_util.tree_map(lambda _: sharding.replicated_sharding(mesh), state)
    return abstract_with_shardings(shardings, state)


def test_save_and_restore_round_trip(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=2, max_to_keep=3)
    assert checkpointer.latest_step() is None

    state = make_state(step=4, scale=1.5)
    checkpointer.save(state, {"note": "first"})
    checkpointer.wait()
    assert checkpointer.latest_step() == 4

    restored = checkpointer.restore(abstract_state(make_state(0, 0.0)))
    assert int(restored.step) == 4
    np.testing.assert_array_equal(restored.params["dense"]["kernel"], np.full((3, 4), 1.5))
    np.testing.assert_array_equal(restored.params["dense"]["bias"], np.arange(4.0) * 1.5)
    np.testing.assert_array_equal(restored.opt_state["moment"], np.ones((3, 4)) * 0.75)
    assert checkpointer.restore_metadata()["note"] == "first"
    checkpointer.close()


def test_keeps_newest_and_restores_given_step(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(make_state(step, float(step)), {"step": step})
        checkpointer.wait()
    assert checkpointer.all_steps() == [2, 3]

    restored = checkpointer.restore(abstract_state(make_state(0, 0.0)), step=2)
    np.testing.assert_array_equal(restored.params["dense"]["kernel"], np.full((3, 4), 2.0))

    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 1 .*available steps: \[2, 3\]"):
        checkpointer.restore(abstract_state(make_state(0, 0.0)), step=1)
    checkpointer.close()


def test_new_manager_finds_existing_checkpoints(tmp_path):
    first = Checkpointer(str(tmp_path), every_steps=5, max_to_keep=3)
    first.save(make_state(5, 3.0), {})
    first.close()

    second = Checkpointer(str(tmp_path), every_steps=5, max_to_keep=3)
    assert second.latest_step() == 5
    restored = second.restore(abstract_state(make_state(0, 0.0)))
    np.testing.assert_array_equal(restored.params["dense"]["kernel"], np.full((3, 4), 3.0))
    second.close()


def test_unfinished_save_is_ignored(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=5, max_to_keep=3)
    checkpointer.save(make_state(5, 1.0), {})
    checkpointer.close()
    # A save interrupted by preemption leaves only a temporary folder behind.
    os.makedirs(tmp_path / "checkpoints" / "10.orbax-checkpoint-tmp-123" / "state")

    reopened = Checkpointer(str(tmp_path), every_steps=5, max_to_keep=3)
    assert reopened.latest_step() == 5
    reopened.close()


def test_restore_without_checkpoint_fails(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=5, max_to_keep=3)
    with pytest.raises(FileNotFoundError, match="no checkpoint found in"):
        checkpointer.restore(abstract_state(make_state(0, 0.0)))
    checkpointer.close()


def test_should_save_interval(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=3, max_to_keep=1)
    assert [step for step in range(1, 10) if checkpointer.should_save(step)] == [3, 6, 9]
    never = Checkpointer(str(tmp_path / "never"), every_steps=0, max_to_keep=1)
    assert not any(never.should_save(step) for step in range(1, 10))
    checkpointer.close()
    never.close()


@pytest.mark.parametrize("every_steps, max_to_keep, message", [(-1, 1, "every_steps"), (1, 0, "max_to_keep")])
def test_invalid_settings_rejected(tmp_path, every_steps, max_to_keep, message):
    with pytest.raises(ValueError, match=message):
        Checkpointer(str(tmp_path), every_steps=every_steps, max_to_keep=max_to_keep)


def test_restore_params_only(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    checkpointer.save(make_state(3, 2.5), {})
    checkpointer.wait()

    target = abstract_state(make_state(0, 0.0)).params
    params = checkpointer.restore_params(target)
    assert set(params) == {"dense"}
    np.testing.assert_array_equal(params["dense"]["kernel"], np.full((3, 4), 2.5))
    np.testing.assert_array_equal(params["dense"]["bias"], np.arange(4.0) * 2.5)
    checkpointer.close()
