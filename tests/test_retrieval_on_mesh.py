"""Retrieval metrics with the similarity blocks spread over 8 CPU devices equal the single-device metrics."""

import os
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    from multimae_jax.evaluation.retrieval import retrieval_metrics
    from multimae_jax.training.sharding import make_mesh

    assert jax.device_count() == 8, jax.devices()
    results = []
    rng = np.random.default_rng(0)
    # (images, caption counts drawn from, tile size, fsdp size)
    cases = [(1, [3], 4, 1), (13, [1, 5, 6, 7], 4, 1), (37, [5], 8, 2), (50, [1, 2, 6], 16, 4), (9, [5], 512, 1)]
    for num_images, counts, tile_size, fsdp_size in cases:
        per_image = rng.choice(counts, size=num_images)
        text_to_image = np.repeat(np.arange(num_images), per_image)
        rng.shuffle(text_to_image)
        images = rng.standard_normal((num_images, 8)).astype(np.float32)
        texts = images[text_to_image] + rng.standard_normal((len(text_to_image), 8)).astype(np.float32)
        texts[:3] = texts[0]  # Duplicates create exact ties.
        single = retrieval_metrics(images, texts, text_to_image, tile_size=tile_size)
        sharded = retrieval_metrics(images, texts, text_to_image, tile_size=tile_size,
                                    mesh=make_mesh(fsdp_size=fsdp_size))
        results.append({"single": single, "sharded": sharded, "case": [num_images, tile_size, fsdp_size]})
    print("RESULTS" + json.dumps(results))
    """
)


def test_mesh_metrics_equal_single_device(tmp_path):
    script = tmp_path / "mesh_retrieval.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO_ROOT)
    completed = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    import json

    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS"):])
    assert len(results) == 5
    for result in results:
        for key, value in result["single"].items():
            assert result["sharded"][key] == value, (result["case"], key)
