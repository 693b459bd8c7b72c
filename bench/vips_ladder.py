"""The rendition ladder made by libvips, and the lossless mozjpeg pass, in a helper process.

Runs under bench/.venv-vips (pyvips + pyvips-binary, mozjpeg-lossless-optimization), spoken to
through bench/framed.py by bench/test_bench_renditions.py, which interleaves its rounds with the
project's own ladder in the benchmark's process: one process each, the same sources, the same
qualities. Each answer carries the helper's own clock (wall and CPU, around the work only), so
the pipe's cost is in neither side's figure.

The ladder as a libvips user would write it: ``thumbnail_buffer`` for the largest size (libvips
shrinks a JPEG on load, as Pillow's draft does, and applies the EXIF orientation), then each
smaller size from the one above with ``thumbnail_image``; each size is made once into memory
(``copy_memory``), because libvips is lazy and would otherwise run the whole chain, decode
included, again for the next size. Saved as the project saves: JPEG with optimised Huffman
tables, progressive from the same size up, 4:2:0 (libvips's default below Q 90, as Pillow's);
WebP at effort 4 (Pillow's method 4); no metadata.

libvips runs with VIPS_CONCURRENCY=1 (set by the benchmark): the worker runs one image per pool
process and as many processes as cores, so the fair comparison is one image on one core, and
the CPU time (all of the helper's threads) is the figure to compare. Its operation cache is off,
or every round after the first would be answered from it.

    PYTHONPATH=. VIPS_CONCURRENCY=1 bench/.venv-vips/bin/python bench/vips_ladder.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import mozjpeg_lossless_optimization
import pyvips

from bench.framed import serve

Answer = tuple[dict[str, Any], list[bytes]]


def _save(image: pyvips.Image, fmt: str, quality: int, progressive_from: int) -> bytes:
    if fmt == "jpeg":
        interlace = max(image.width, image.height) >= progressive_from
        return image.jpegsave_buffer(
            Q=quality, optimize_coding=True, interlace=interlace, keep="none"
        )
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, effort=4, keep="none")
    raise ValueError(f"no libvips ladder for {fmt!r}")


def ladder(data: bytes, fmt: str, sizes: list[int], quality: int, progressive_from: int) -> list:
    """(image, encoded) for each of ``sizes`` (longest sides, ascending), each smaller size
    made from the next larger one."""
    made = []
    image = None
    for size in reversed(sizes):
        if image is None:
            image = pyvips.Image.thumbnail_buffer(data, size, height=size, size="down")
        else:
            image = image.thumbnail_image(size, height=size, size="down")
        image = image.copy_memory()
        made.append((image, _save(image, fmt, quality, progressive_from)))
    made.reverse()
    return made


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def main() -> int:
    pyvips.cache_set_max(0)
    sources: dict[str, bytes] = {}

    def about(header: dict[str, Any], parts: list[bytes]) -> Answer:
        return {
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
            "pyvips": metadata.version("pyvips"),
            "pyvips_binary": metadata.version("pyvips-binary"),
            "mozjpeg_lossless_optimization": metadata.version("mozjpeg-lossless-optimization"),
            "concurrency": pyvips.vips_lib.vips_concurrency_get(),
        }, []

    def source(header: dict[str, Any], parts: list[bytes]) -> None:
        sources[header["key"]] = parts[0]

    def run_ladder(header: dict[str, Any], parts: list[bytes]) -> Answer:
        data = sources[header["key"]]
        made, wall_ms, cpu_ms = _timed(
            lambda: ladder(
                data,
                header["format"],
                header["sizes"],
                header["quality"],
                header["progressive_from"],
            )
        )
        renditions = [
            {"width": image.width, "height": image.height, "bytes": len(encoded)}
            for image, encoded in made
        ]
        returned = [encoded for _, encoded in made] if header.get("return_data") else []
        return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "renditions": renditions}, returned

    def mozjpeg(header: dict[str, Any], parts: list[bytes]) -> Answer:
        optimized, wall_ms, cpu_ms = _timed(
            lambda: [mozjpeg_lossless_optimization.optimize(jpeg) for jpeg in parts]
        )
        returned = optimized if header.get("return_data") else []
        sizes = [len(jpeg) for jpeg in optimized]
        return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "bytes": sizes}, returned

    serve(
        {"about": about, "source": source, "ladder": run_ladder, "mozjpeg": mozjpeg},
        sys.stdin.buffer,
        sys.stdout.buffer,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
