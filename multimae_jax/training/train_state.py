"""The training state: step, parameters and optimizer state."""

from typing import Any

import flax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    """Everything a training step updates and a checkpoint stores.

    Attributes:
      step: int32 scalar, the number of optimizer updates applied so far.
      params: the model's parameter tree.
      opt_state: the optax state for `params`.
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
