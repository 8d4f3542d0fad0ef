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

    def __init__(self, workdir: str, every_steps: int, max_to_keep: int):
        if every_steps < 0:
            raise ValueError(f"checkpoint.every_steps must be >= 0 (0 saves only at the end), got {every_steps}")
        if max_to_keep < 1:
            raise ValueError(f"checkpoint.max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
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
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory}; available steps: "
                                    f"{self.all_steps()}")
        logging.info("Restoring checkpoint of step %d from %s", step, self.directory)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract_state)}))
        return restored[STATE_ITEM]

    def restore_metadata(self, step: Optional[int] = None) -> dict[str, Any]:
        step = self.latest_step() if step is None else step
        restored = self._manager.restore(step, args=ocp.args.Composite(**{METADATA_ITEM: ocp.args.JsonRestore()}))
        return restored[METADATA_ITEM]

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
