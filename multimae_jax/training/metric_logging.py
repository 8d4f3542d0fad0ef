"""Training and evaluation metrics to the log and to `<workdir>/metrics.jsonl`."""

import json
import logging
import math
import os
import time
from typing import Mapping

import jax


def format_duration(seconds: float) -> str:
    """Format seconds as H:MM:SS."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricLogger:
    """Writes one log line per reporting interval and appends the same values to metrics.jsonl.

    Only process 0 writes; the other processes log nothing, so a multi-host run has one line per interval.
    """

    def __init__(self, workdir: str, total_steps: int, global_batch_size: int, unit: str = "images"):
        """`unit` names the examples of a batch in the throughput: "images" or "texts" (for text-only tasks)."""
        self.unit = unit
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self.is_writer = jax.process_index() == 0
        self._interval_start_time = time.time()
        self._interval_start_step = None

    def start_interval(self, step: int) -> None:
        """Mark the step and time from which the throughput and the ETA are measured."""
        self._interval_start_time = time.time()
        self._interval_start_step = step

    def write_train(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log the averaged training metrics of the interval that ends at `step`, with throughput and ETA."""
        elapsed = time.time() - self._interval_start_time
        steps_done = step - (self._interval_start_step if self._interval_start_step is not None else step)
        per_second = steps_done * self.global_batch_size / elapsed if elapsed > 0 and steps_done > 0 else 0.0
        seconds_per_step = elapsed / steps_done if steps_done > 0 else math.nan
        eta = (self.total_steps - step) * seconds_per_step if steps_done > 0 else math.nan

        record = {"step": step, "split": "train", **{k: float(v) for k, v in metrics.items()},
                  f"{self.unit}_per_second": per_second, "eta_seconds": eta}
        values = " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
        eta_text = format_duration(eta) if math.isfinite(eta) else "?"
        if self.is_writer:
            logging.info("step %d/%d %s %s/s=%.1f eta=%s", step, self.total_steps, values, self.unit, per_second,
                         eta_text)
        self._append(record)
        self.start_interval(step)

    def write_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Append evaluation metrics to metrics.jsonl (the evaluator logs them itself)."""
        self._append({"step": step, "split": split, **{k: v for k, v in metrics.items()}})

    def _append(self, record: dict) -> None:
        if not self.is_writer:
            return
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, allow_nan=True) + "\n")
