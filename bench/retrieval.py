"""Benchmark retrieval_metrics against the NumPy argsort recipe at COCO 5k test size.

Speed: times multimae_jax.evaluation.retrieval.retrieval_metrics on NumPy float32 unit
vectors (5,000 images x 25,010 captions x 256 dims by default, as in the COCO Karpathy
5k test split), the jitted similarity matmul alone, and the NumPy peer script
../shared/peers/retrieval_numpy.py in a subprocess. It prints each figure with its
target and PASS or MISS.

Memory: runs retrieval_metrics for N images x 5N captions in a fresh subprocess per
size and prints its peak resident memory next to the size of the full float32
similarity matrix.

A missed target does not change the exit status. Errors (peer script not found, a
failed subprocess, invalid flags) exit with status 1 and a message on stderr.

Usage: python bench/retrieval.py [--help]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

# `python bench/retrieval.py` puts bench/ on sys.path, not the checkout. Adding the
# checkout makes the package importable without installing it.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from multimae_jax.evaluation.retrieval import DEFAULT_TILE_SIZE, retrieval_metrics  # noqa: E402

PEER_SCRIPT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "peers", "retrieval_numpy.py")

TARGET_OURS_SECONDS = 1.0
TARGET_PEER_OVER_OURS = 15.0
TARGET_OURS_OVER_MATMUL = 2.0

HUGE_IMAGES = 100_000

# Noise is added to the captions in blocks of this many rows, so that building the
# embeddings never holds a temporary as large as all captions.
_NOISE_BLOCK_ROWS = 16_384

# Durations that jax.monitoring reports for tracing, lowering and XLA compilation.
# The names are defined in jax/_src/dispatch.py (jax 0.10.2) and are not a documented API.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def parse_sizes(text: str) -> list[int]:
    """Parse a comma-separated list of positive image counts such as "2000,8000". An empty string gives []."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"invalid image count {part!r} in {text!r}: pass positive integers separated by commas, "
                "such as 2000,8000,32000, or an empty string to skip the memory runs."
            )
        sizes.append(int(part))
    return sizes


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}.")
    return int(text)


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}.")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time retrieval_metrics against the NumPy argsort recipe and measure its peak memory.",
    )
    parser.add_argument("--images", type=positive_int, default=5000,
                        help="images in the speed runs (default: 5000, the COCO 5k test split).")
    parser.add_argument("--captions-per-image", type=positive_int, default=5,
                        help="captions of every image, in the speed and memory runs and for the peer (default: 5).")
    parser.add_argument("--extra-captions", type=non_negative_int, default=10,
                        help="images that get one caption more than --captions-per-image in our speed runs "
                             "(default: 10, which gives the 25,010 captions of COCO 5k test). "
                             "The peer cannot take extra captions.")
    parser.add_argument("--dim", type=positive_int, default=256, help="embedding width (default: 256).")
    parser.add_argument("--tile-size", type=positive_int, default=DEFAULT_TILE_SIZE,
                        help=f"tile_size passed to retrieval_metrics in all runs (default: {DEFAULT_TILE_SIZE}).")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed calls after the warm-up call. The median is reported (default: 5).")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random embeddings (default: 0).")
    parser.add_argument("--peer-python", default=os.environ.get("PEERS_PYTHON", sys.executable),
                        help="Python interpreter that runs the NumPy peer. It needs only NumPy "
                             "(default: $PEERS_PYTHON, else this interpreter).")
    parser.add_argument("--memory-sizes", type=parse_sizes, default=parse_sizes("2000,8000,32000"),
                        help="image counts N of the memory runs, each with N x captions-per-image captions, "
                             "separated by commas. An empty string skips them (default: 2000,8000,32000).")
    parser.add_argument("--huge", action="store_true",
                        help=f"add a memory run of {HUGE_IMAGES:,} images (500,000 captions at the default 5 per image). "
                             "Time grows with images x captions, so it takes about 10 times as long as "
                             "the 32,000-image run.")
    # Internal: one memory measurement in a fresh process, started by the parent run.
    parser.add_argument("--memory-child", type=positive_int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.extra_captions > args.images:
        parser.error(f"--extra-captions {args.extra_captions} exceeds --images {args.images}: "
                     "at most one extra caption per image.")
    return args


def make_embeddings(num_images: int, captions_per_image: int, extra_captions: int, dim: int, seed: int):
    """Build random unit embeddings in which every caption is a noisy copy of its image.

    Each image is a standard normal vector scaled to unit length. A caption is its
    image plus standard normal noise, scaled to unit length again. The NumPy peer
    builds its embeddings the same way from other random draws.

    Returns:
        images: float32 [num_images, dim].
        texts: float32 [num_captions, dim], num_captions = num_images *
            captions_per_image + extra_captions.
        text_to_image: int64 [num_captions], sorted, so that an image's captions are
            adjacent. Images 0 .. extra_captions - 1 have one caption more.
    """
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((num_images, dim), dtype=np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)

    text_to_image = np.sort(np.concatenate([
        np.repeat(np.arange(num_images), captions_per_image),
        np.arange(extra_captions),
    ]))

    texts = images[text_to_image]
    for start in range(0, len(texts), _NOISE_BLOCK_ROWS):
        block = texts[start:start + _NOISE_BLOCK_ROWS]
        block += rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return images, texts, text_to_image


def describe_machine() -> list[str]:
    """Return lines naming the CPU model, core counts, load, jax version and backend."""
    cpu_model = "unknown (no 'model name' in /proc/cpuinfo)"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError as error:
        cpu_model = f"unknown (/proc/cpuinfo not readable: {error})"

    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    devices = ", ".join(str(device) for device in jax.devices())
    return [
        f"cpu         {cpu_model}",
        f"cores       {os.cpu_count()} ({usable_cores} usable by this process)",
        f"load        {load} (1, 5 and 15 minute averages at the start; other processes slow every figure)",
        f"jax         {jax.__version__}",
        f"backend     {jax.default_backend()} ({devices})",
    ]


def time_calls(function, repeats: int) -> dict[str, float | bool]:
    """Call ``function`` once to warm up, then ``repeats`` times, timing each call.

    ``function`` must block until its result is ready.

    Returns:
        Seconds under ``first`` (the warm-up call), ``compile`` (tracing, lowering and
        XLA compilation during the warm-up call) and ``median`` (of the timed calls).
        ``compile_is_estimate`` is True when jax reported no compile durations, so
        that ``compile`` is first minus median instead.
    """
    compile_seconds = []

    def record(event: str, duration_secs: float, **kwargs) -> None:
        if event in _COMPILE_EVENTS:
            compile_seconds.append(duration_secs)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        start = time.perf_counter()
        function()
        first = time.perf_counter() - start
    finally:
        jax.monitoring.unregister_event_duration_listener(record)

    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    median = statistics.median(durations)

    if compile_seconds:
        return {"first": first, "compile": sum(compile_seconds), "median": median, "compile_is_estimate": False}
    return {"first": first, "compile": max(first - median, 0.0), "median": median, "compile_is_estimate": True}


@jax.jit
def _similarity(texts, images):
    # The same precision as the matmul inside retrieval_metrics. On CPU it is plain float32.
    return jnp.matmul(texts, images.T, precision=jax.lax.Precision.HIGHEST)


def run_peer(peer_python: str, num_images: int, captions_per_image: int, dim: int) -> float:
    """Run the NumPy peer script in a subprocess and return the seconds it prints."""
    if not os.path.isfile(PEER_SCRIPT):
        raise SystemExit(
            f"error: peer script not found at {PEER_SCRIPT}. The benchmark expects the shared folder "
            "beside the checkout (<repo root>/../shared/peers/retrieval_numpy.py)."
        )

    command = [peer_python, PEER_SCRIPT, "--images", str(num_images),
               "--captions-per-image", str(captions_per_image), "--dim", str(dim)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        raise SystemExit(
            f"error: could not start the peer interpreter {peer_python!r}: {error}. "
            "Pass an existing Python with NumPy through --peer-python or PEERS_PYTHON."
        ) from error
    if completed.returncode != 0:
        raise SystemExit(
            f"error: peer command failed with exit status {completed.returncode}: {' '.join(command)}\n"
            f"{completed.stderr[-2000:]}"
        )

    match = re.search(r"^seconds\s+([0-9.]+)\s*$", completed.stdout, re.MULTILINE)
    if match is None:
        raise SystemExit(
            f"error: no 'seconds X' line in the output of the peer command {' '.join(command)}. "
            f"Its output was:\n{completed.stdout[-2000:]}"
        )
    return float(match.group(1))


def print_figure(name: str, value: float, unit: str, *, at_most=None, at_least=None, note: str = "") -> bool | None:
    """Print one figure line and return whether it meets its target (None without a target)."""
    # Four significant digits, never an exponent: 30.29 s, 1.217 x, 0.00002012 s.
    digits = np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-")
    line = f"{name:<12} {digits:>10} {unit:<2}"
    verdict = None
    if at_most is not None:
        verdict = value <= at_most
        line += f"  target <= {at_most:g} {unit:<2}  {'PASS' if verdict else 'MISS'}"
    elif at_least is not None:
        verdict = value >= at_least
        line += f"  target >= {at_least:g} {unit:<2}  {'PASS' if verdict else 'MISS'}"
    if note:
        line += f"  ({note})"
    print(line, flush=True)
    return verdict


def run_speed(args: argparse.Namespace) -> list[bool | None]:
    """Time ours, the matmul alone and the peer; print the figures and return the verdicts."""
    images, texts, text_to_image = make_embeddings(
        args.images, args.captions_per_image, args.extra_captions, args.dim, args.seed)
    peer_captions = args.images * args.captions_per_image
    print(f"== speed: {args.images:,} images x {len(texts):,} captions x {args.dim} dims, float32 NumPy inputs, "
          f"tile_size {args.tile_size}, median of {args.repeats} calls after 1 warm-up call", flush=True)

    ours = time_calls(
        lambda: retrieval_metrics(images, texts, text_to_image, tile_size=args.tile_size), args.repeats)

    # Inputs live on the device first, so that only the matmul and its output are timed.
    device_texts, device_images = jax.device_put(texts), jax.device_put(images)
    matmul = time_calls(lambda: _similarity(device_texts, device_images).block_until_ready(), args.repeats)

    peer_seconds = run_peer(args.peer_python, args.images, args.captions_per_image, args.dim)

    compile_note = "first call minus median, an estimate" if ours["compile_is_estimate"] else \
        "trace, lowering and XLA compile in the warm-up call, excluded from 'ours'"
    verdicts = [
        print_figure("ours", ours["median"], "s", at_most=TARGET_OURS_SECONDS,
                     note="retrieval_metrics, NumPy in, Python floats out"),
        print_figure("compile", ours["compile"], "s", note=compile_note),
        print_figure("matmul", matmul["median"], "s",
                     note=f"jitted texts @ images.T alone, {len(texts):,} x {args.images:,} float32 output"),
        print_figure("ours/matmul", ours["median"] / matmul["median"], "x", at_most=TARGET_OURS_OVER_MATMUL),
        print_figure("peer", peer_seconds, "s",
                     note=f"NumPy matmul + argsort at {args.images:,} images x {peer_captions:,} captions, "
                          f"because the peer gives every image exactly {args.captions_per_image} captions"),
        print_figure("peer/ours", peer_seconds / ours["median"], "x", at_least=TARGET_PEER_OVER_OURS),
    ]
    return verdicts


def read_memory_kib() -> dict[str, int]:
    """Return VmRSS (current) and VmHWM (peak) resident memory of this process in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(line.split()[1])
    if len(values) != 2:
        raise SystemExit("error: /proc/self/status has no VmRSS or VmHWM line; the memory runs need Linux.")
    return values


def run_memory_child(args: argparse.Namespace) -> None:
    """Measure one retrieval_metrics call in this fresh process and print a JSON line."""
    images, texts, text_to_image = make_embeddings(
        args.memory_child, args.captions_per_image, 0, args.dim, args.seed)

    # Writing 5 to clear_refs sets the peak (VmHWM) back to the current resident size,
    # so the peak read after the call belongs to the call. Without it the peak could
    # still date from building the embeddings.
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        peak_reset = True
    except OSError:
        peak_reset = False
    before = read_memory_kib()

    start = time.perf_counter()
    metrics = retrieval_metrics(images, texts, text_to_image, tile_size=args.tile_size)
    seconds = time.perf_counter() - start
    after = read_memory_kib()

    print(json.dumps({
        "images": len(images),
        "captions": len(texts),
        "baseline_kib": before["VmRSS"] if peak_reset else before["VmHWM"],
        "peak_kib": after["VmHWM"],
        "peak_reset": peak_reset,
        "seconds": seconds,
        "rsum": metrics["rsum"],
    }))


def measure_memory(args: argparse.Namespace, num_images: int) -> dict:
    """Run run_memory_child for ``num_images`` images in a fresh process and return its JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", str(num_images),
               "--captions-per-image", str(args.captions_per_image), "--dim", str(args.dim),
               "--tile-size", str(args.tile_size), "--seed", str(args.seed)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(
            f"error: memory run for {num_images:,} images failed with exit status {completed.returncode}: "
            f"{' '.join(command)}\n{completed.stderr[-2000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_memory(args: argparse.Namespace) -> None:
    """Print peak memory of retrieval_metrics at each size next to the full similarity matrix."""
    sizes = sorted(set(args.memory_sizes + ([HUGE_IMAGES] if args.huge else [])))
    if not sizes:
        return

    print(f"== memory: one call per fresh process, N images x {args.captions_per_image}N captions x {args.dim} dims, "
          f"tile_size {args.tile_size}, sizes in MiB (2**20 bytes)", flush=True)
    print("   baseline: resident memory before the call (interpreter, jax, embeddings). peak: max resident memory "
          "during the call, XLA compilation included. added: peak - baseline.", flush=True)
    print("   embeddings: (images + captions) x dims x 4 bytes. full_matrix: images x captions x 4 bytes, "
          "the float32 similarity matrix that is never built.", flush=True)
    header = (f"{'images':>8} {'captions':>9} {'embeddings':>11} {'baseline':>9} {'peak':>9} {'added':>9} "
              f"{'added/embeddings':>17} {'full_matrix':>12} {'seconds':>8}")
    print(header, flush=True)

    rows = []
    for num_images in sizes:
        if rows:
            # Time grows with images x captions, so scale the last run to warn about long ones.
            last = rows[-1]
            scale = (num_images / last["images"]) * (num_images * args.captions_per_image / last["captions"])
            if last["seconds"] * scale > 60:
                print(f"   (running {num_images:,} images; estimated {last['seconds'] * scale / 60:.0f} min)",
                      flush=True)
        row = measure_memory(args, num_images)
        rows.append(row)

        mib = 2 ** 20
        embeddings = (row["images"] + row["captions"]) * args.dim * 4 / mib
        baseline = row["baseline_kib"] / 1024
        peak = row["peak_kib"] / 1024
        added = peak - baseline
        full_matrix = row["images"] * row["captions"] * 4 / mib
        print(f"{row['images']:>8} {row['captions']:>9} {embeddings:>11.1f} {baseline:>9.1f} {peak:>9.1f} "
              f"{added:>9.1f} {added / embeddings:>17.2f} {full_matrix:>12.1f} {row['seconds']:>8.2f}", flush=True)
        if not row["peak_reset"]:
            print("   (peak not reset before the call: /proc/self/clear_refs was not writable, "
                  "so baseline is the peak before the call)", flush=True)

    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        added_growth = (last["peak_kib"] - last["baseline_kib"]) / max(first["peak_kib"] - first["baseline_kib"], 1)
        caption_growth = last["captions"] / first["captions"]
        matrix_growth = (last["images"] * last["captions"]) / (first["images"] * first["captions"])
        print(f"memory growth from {first['images']:,} to {last['images']:,} images: added {added_growth:.1f}x, "
              f"captions {caption_growth:.1f}x, full matrix {matrix_growth:.0f}x", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child is not None:
        run_memory_child(args)
        return 0

    print("== machine", flush=True)
    for line in describe_machine():
        print(line, flush=True)

    verdicts = run_speed(args)
    run_memory(args)

    met = sum(1 for verdict in verdicts if verdict)
    targets = sum(1 for verdict in verdicts if verdict is not None)
    print(f"targets met: {met} of {targets}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
