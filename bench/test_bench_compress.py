"""compressor.compress against the naive way, side by side in one run, and pool scaling.

The naive way: ``Image.open`` -> ``ImageOps.exif_transpose`` on the full image -> ``resize``
with LANCZOS to the same target size -> save JPEG q80 progressive optimised. The JPEG sources
are camera-like (EXIF orientation 6, so the transpose does real work) at 12, 2 and 0.5 MP; a
PNG with alpha (flattened onto white by both ways) completes the set.

Pool scaling: images/s of ``compress`` in a ProcessPoolExecutor of 1 and of 2 processes on the
12 MP JPEG, each pool warmed up before it is timed.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from bench.conftest import QUICK, seconds_to_compress, write_result
from bench.pillow_compare import OPTIONS, naive, project
from testkit.imagegen import photo_jpeg, png_with_alpha

# name: (generator, rounds in quick mode, rounds in full mode)
IMAGES: dict[str, tuple[Callable[[], bytes], int, int]] = {
    "jpeg-12mp": (lambda: photo_jpeg(4000, 3000, orientation=6), 3, 15),
    "jpeg-2mp": (lambda: photo_jpeg(1632, 1224, orientation=6), 5, 30),
    "jpeg-0.5mp": (lambda: photo_jpeg(816, 612, orientation=6), 10, 60),
    "png-alpha-3mp": (lambda: png_with_alpha(2000, 1500), 3, 15),
}
POOL_IMAGE = "jpeg-12mp"
POOL_TASKS = 16 if QUICK else 40
POOL_SIZES = (1, 2)


WAYS = {"project": project, "naive": naive}
RESULTS: dict[str, Any] = {"images": {}, "pool": {}}


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    return {name: generate() for name, (generate, _, _) in IMAGES.items()}


@pytest.fixture(scope="module", autouse=True)
def _write_results() -> Iterator[None]:
    yield
    for entry in RESULTS["images"].values():
        if {"project_ms", "naive_ms"} <= entry.keys():
            entry["speedup"] = entry["naive_ms"] / entry["project_ms"]
    pool = RESULTS["pool"]
    if all(f"images_per_s_{n}" in pool for n in POOL_SIZES):
        pool["scaling"] = pool[f"images_per_s_{POOL_SIZES[-1]}"] / pool["images_per_s_1"]
    write_result("compress", {"options": repr(OPTIONS), **RESULTS})


@pytest.mark.parametrize("image", list(IMAGES))
@pytest.mark.parametrize("way", list(WAYS))
def test_compress(benchmark, images, image: str, way: str) -> None:
    data = images[image]
    function = WAYS[way]
    _, quick_rounds, full_rounds = IMAGES[image]
    benchmark.group = f"compress {image}"
    output = benchmark.pedantic(
        function, args=(data,), rounds=quick_rounds if QUICK else full_rounds, warmup_rounds=1
    )
    with Image.open(io.BytesIO(output)) as result:
        assert result.format == "JPEG"
        assert max(result.size) <= OPTIONS.max_dimension
    entry = RESULTS["images"].setdefault(
        image, {"source_bytes": len(data), "output_size": list(result.size)}
    )
    assert entry["output_size"] == list(result.size), "both ways must produce the same size"
    entry[f"{way}_ms"] = statistics.median(benchmark.stats.stats.data) * 1e3


def test_pool_scaling(images) -> None:
    data = images[POOL_IMAGE]
    pool = RESULTS["pool"]
    pool.update({"image": POOL_IMAGE, "tasks": POOL_TASKS})
    for processes in POOL_SIZES:
        elapsed = seconds_to_compress(processes, data, OPTIONS, POOL_TASKS)
        pool[f"images_per_s_{processes}"] = POOL_TASKS / elapsed
