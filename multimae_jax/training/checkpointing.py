"""Orbax checkpoints of the training state that a restarted run resumes from by itself."""

import logging
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from multimae_jax.training.train_state import TrainState

STATE_ITEM = "state"
METADATA_ITEM = "metadata"


class Checkpointer:
    """Saves every `every_steps` steps and on request, keeps the newest `max_to_keep`, restores the newest.

    Checkpoints live in `<workdir>/checkpoints/<step>/`, each with the sharded train state and a JSON item of
    run metadata (config, tokenizer facts). Saving is asynchronous: training continues while the files are
    written, and `wait` blocks until they are complete. Orbax writes each step to a temporary folder and renames
    it when finished, so an interrupted save never leaves a checkpoint that looks complete.
    """

    def __init__(self, workdir: str, every_steps: int, max_to_keep: int, directory: Optional[str] = None):
        if every_steps < 0:
            raise ValueError(f"checkpoint.every_steps must be >= 0 (0 saves only at the end), got {every_steps}")
        if max_to_keep < 1:
            raise ValueError(f"checkpoint.max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.abspath(directory or os.path.join(workdir, "checkpoints"))
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=(STATE_ITEM, METADATA_ITEM))

    def latest_step(self) -> Optional[int]:
        """Return the newest complete checkpoint's step, or None when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def should_save(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(self, state: TrainState, metadata: dict[str, Any]) -> None:
        """Start saving `state` at its step, unless a checkpoint of that step exists already."""
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return
        logging.info("Saving checkpoint at step %d to %s", step, self.directory)
        self._manager.save(
            step,
            args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                       METADATA_ITEM: ocp.args.JsonSave(metadata)}),
            force=True,
        )

    def restore(self, abstract_state: TrainState, step: Optional[int] = None) -> TrainState:
        """Restore a checkpoint into the shapes, dtypes and shardings of `abstract_state`.

        Args:
          abstract_state: a TrainState of jax.ShapeDtypeStruct leaves carrying the target shardings, so the
            arrays land on the current mesh whatever the device count of the run that saved them.
          step: the step to restore; the newest when None.
        """
        step = self._existing_step(step)
        logging.info("Restoring checkpoint of step %d from %s", step, self.directory)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract_state)}))
        return restored[STATE_ITEM]

    def restore_params(self, abstract_params, step: Optional[int] = None):
        """Restore only the model parameters of a checkpoint, skipping the optimizer state.

        Args:
          abstract_params: the parameter tree as jax.ShapeDtypeStruct leaves with the target shardings.
          step: the step to restore; the newest when None.
        """
        step = self._existing_step(step)
        logging.info("Restoring the parameters of step %d from %s", step, self.directory)
        # The standard handler that wrote the state cannot restore a subtree. The PyTree handler reads the same
        # format and can, so it restores the parameters and leaves the optimizer state on disk.
        reader = ocp.CheckpointManager(self.directory,
                                       options=ocp.CheckpointManagerOptions(create=False),
                                       item_handlers={STATE_ITEM: ocp.PyTreeCheckpointHandler()})
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_params)
        try:
            restored = reader.restore(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.PyTreeRestore(
                item={"params": abstract_params}, restore_args={"params": restore_args}, partial_restore=True)}))
        finally:
            reader.close()
        return restored[STATE_ITEM]["params"]

    def _existing_step(self, step: Optional[int]) -> int:
        """Return `step`, or the newest step when None, checking that a checkpoint of it exists."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory}; available steps: "
                                    f"{self.all_steps()}")
        return step

    def restore_metadata(self, step: Optional[int] = None) -> dict[str, Any]:
        """Return the JSON metadata saved with a checkpoint (the newest when step is None)."""
        step = self._existing_step(step)
        restored = self._manager.restore(step, args=ocp.args.Composite(**{METADATA_ITEM: ocp.args.JsonRestore()}))
        return restored[METADATA_ITEM]

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
