"""Benchmark what text MLM learns in a fixed budget, against the unigram-frequency baseline.

Trains configs/mlm.py on the Flickr8k captions (../shared/data/flickr8k by default) for a
fixed number of steps through launch.py, in a fresh workdir, then reads the held-out
evaluation (the 5,000 captions of the official 1,000-image dev split) from eval_val.json.
It prints masked-token accuracy and perplexity of the trained encoder next to the peer
a model must beat to have learned anything from context: the unigram baseline. It
predicts every masked token as the most frequent training token, and its perplexity
is that of the training token frequencies. Both are measured on the same masked tokens
(the same corruption draws) in the same run.

The default budget (vit_tiny widths, 4 layers, 300 steps of 64 captions, about 1.3
epochs) takes a few minutes on a 2-core CPU. The ratios printed are ours over the
baseline for accuracy, and the baseline over ours for perplexity, so above 1 is better
in both.

Usage: python bench/mlm_accuracy.py [--steps N] [--depth D] [--data-root DIR] [--help]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_ROOT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "flickr8k")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                        help="COCO Karpathy-format folder with annotations/flickr8k_{train,val}.json")
    parser.add_argument("--prefix", default="flickr8k", help="annotation file prefix: <prefix>_train.json, ...")
    parser.add_argument("--variant", default="vit_tiny", help="configs/mlm.py variant")
    parser.add_argument("--depth", type=int, default=4, help="text encoder layers (config.model.text.depth)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (the fixed budget)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-text-length", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--workdir", default="", help="run folder; empty: a new temporary folder, deleted after")
    parser.add_argument("--extra", action="append", default=[],
                        help="further --config.a.b=value overrides for launch.py (repeatable)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.depth < 1 or args.batch_size < 1:
        parser.error("--steps, --depth and --batch-size must be >= 1")
    for split in ("train", "val"):
        path = os.path.join(args.data_root, "annotations", f"{args.prefix}_{split}.json")
        if not os.path.isfile(path):
            parser.error(f"annotation file {path} not found; pass --data-root (and --prefix) of a COCO "
                         f"Karpathy-format folder, such as ../shared/data/flickr8k")
    return args


def launch_command(args, workdir: str) -> list[str]:
    """Return the launch.py command line of the benchmark run."""
    return [
        sys.executable, os.path.join(REPO_ROOT, "launch.py"),
        "--config", os.path.join(REPO_ROOT, "configs", "mlm.py") + f":{args.variant}",
        "--workdir", workdir,
        f"--config.data.root={os.path.abspath(args.data_root)}",
        f"--config.data.train_annotations={args.prefix}_train.json",
        f"--config.data.val_annotations={args.prefix}_val.json",
        f"--config.data.test_annotations={args.prefix}_test.json",
        f"--config.data.max_text_length={args.max_text_length}",
        f"--config.data.vocab_size={args.vocab_size}",
        f"--config.model.text.depth={args.depth}",
        f"--config.train.batch_size={args.batch_size}",
        f"--config.train.num_steps={args.steps}",
        f"--config.train.warmup_steps={max(1, args.steps // 10)}",
        f"--config.train.log_every_steps={max(1, args.steps // 10)}",
        "--config.eval.every_steps=0",
        "--config.checkpoint.every_steps=0",
        *args.extra,
    ]


def run(args, workdir: str) -> dict:
    """Train and evaluate in `workdir`; return the held-out metrics with the run's wall time."""
    command = launch_command(args, workdir)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"the training run failed (exit status {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    # With no test annotations the final evaluation is on val; Flickr8k has none in ../shared/data.
    for split in ("test", "val"):
        path = os.path.join(workdir, f"eval_{split}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as file:
                return {**json.load(file), "seconds": seconds}
    raise RuntimeError(f"the training run wrote no eval_test.json or eval_val.json in {workdir}")


def report(args, metrics: dict) -> None:
    print(f"== text MLM on {os.path.abspath(args.data_root)}: {args.variant} with {args.depth} layers, "
          f"{args.steps} steps of {args.batch_size} captions ({metrics['seconds']:.0f} s)")
    print(f"held-out {metrics['split']} split: {metrics['num_texts']} captions, "
          f"{metrics['num_masked_tokens']} masked tokens")
    print(f"{'figure':<28}{'ours':>10}{'unigram':>10}{'ratio':>8}")
    accuracy, baseline_accuracy = metrics["mlm_accuracy"], metrics["unigram_accuracy"]
    perplexity, baseline_perplexity = metrics["mlm_perplexity"], metrics["unigram_perplexity"]
    accuracy_ratio = accuracy / baseline_accuracy if baseline_accuracy > 0 else float("inf")
    print(f"{'masked-token accuracy':<28}{accuracy:>10.4f}{baseline_accuracy:>10.4f}{accuracy_ratio:>7.2f}x")
    print(f"{'perplexity':<28}{perplexity:>10.2f}{baseline_perplexity:>10.2f}"
          f"{baseline_perplexity / perplexity:>7.2f}x")
    verdict = "beats" if accuracy > baseline_accuracy and perplexity < baseline_perplexity else "does not beat"
    print(f"the trained encoder {verdict} the unigram baseline on both figures")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.workdir:
            metrics = run(args, os.path.abspath(args.workdir))
        else:
            with tempfile.TemporaryDirectory(prefix="mlm_bench_") as workdir:
                metrics = run(args, workdir)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report(args, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
