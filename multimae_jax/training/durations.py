"""Conversion of durations given in steps or epochs into steps, in one place."""

import logging
import math


def resolve_steps(section, name: str, steps_per_epoch: float) -> int:
    """Return `section.<name>_steps`, or `section.<name>_epochs` converted to steps when that is set.

    An epoch is one pass over the training captions of all processes: steps_per_epoch = captions / global batch.
    Epochs take precedence over the steps default, and the conversion rounds up so that a run covers at least
    the requested epochs.

    Args:
      section: a ConfigDict with fields `<name>_steps` and `<name>_epochs` (either may be None).
      name: the duration's stem, e.g. "num" for num_steps/num_epochs or "every" for every_steps/every_epochs.
      steps_per_epoch: training steps in one epoch (> 0).
    """
    steps_key, epochs_key = f"{name}_steps", f"{name}_epochs"
    steps, epochs = section.get(steps_key), section.get(epochs_key)
    if epochs is not None:
        if epochs < 0:
            raise ValueError(f"{epochs_key} must be >= 0, got {epochs}")
        # Rounding away the last float bits first keeps an exact product such as 0.07 * 100 (7.000000000000001)
        # from rounding up to an extra step.
        converted = int(math.ceil(round(epochs * steps_per_epoch, 6)))
        logging.info("%s=%g is %d steps (%.2f steps per epoch); it overrides %s", epochs_key, epochs, converted,
                     steps_per_epoch, steps_key)
        return converted
    if steps is None:
        raise ValueError(f"set either {steps_key} or {epochs_key}")
    if steps < 0:
        raise ValueError(f"{steps_key} must be >= 0, got {steps}")
    return int(steps)
