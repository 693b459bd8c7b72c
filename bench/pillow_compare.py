"""compressor.compress against the naive way on one 12 MP photo JPEG, under any Pillow.

A standalone script (no pytest), run by ``scripts/bench`` under both interpreters on the same
file: the project's ``.venv`` (Pillow-SIMD) and ``bench/.venv-pillow`` (plain Pillow from
PyPI, same code). It needs only Pillow and the standard library, with the repository root on
``PYTHONPATH``. It prints one JSON object::

    python bench/pillow_compare.py --image /tmp/photo-12mp.jpg [--rounds 9] [--tjbench]

The naive way is the one of ``bench/test_bench_compress.py``: open, ``exif_transpose`` on the
full image, LANCZOS ``resize``, save JPEG q80 progressive optimised. Timings are medians of
``--rounds`` rounds after one warm-up, the two ways interleaved round by round so both see the
same noise. ``resize_ms`` is the LANCZOS resize alone, from the half-scale decode to the output
size (the resize part of the physical floor).

``--tjbench`` (if libjpeg-turbo's ``tjbench`` is installed) also measures that floor: the
half-scale decode of the same file and the progressive q80 encode of an image of the output
size, plus ``resize_ms``; ``fraction`` = floor / ``compress_ms`` (1.0 = no overhead at all).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, ImageOps

from compressor.compress import CompressOptions, compress, target_size

OPTIONS = CompressOptions()  # 1600 px, q80 JPEG: the worker's defaults
WHITE = (255, 255, 255)
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# -rgb: Pillow's pixel format; -quiet: one table row per result.
TJBENCH_OPTIONS = (
    *("-benchtime", "0.5" if QUICK else "2", "-warmup", "0.2"),
    *("-nowrite", "-quiet", "-rgb"),
)


def naive(data: bytes, options: CompressOptions = OPTIONS) -> bytes:
    with Image.open(io.BytesIO(data)) as source:
        image = ImageOps.exif_transpose(source)
    size = target_size(image.width, image.height, options.max_dimension)
    image = image.resize(size, Image.Resampling.LANCZOS)
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, WHITE)
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=options.quality, optimize=True, progressive=True)
    return buffer.getvalue()


def project(data: bytes, options: CompressOptions = OPTIONS) -> bytes:
    return compress(data, options).data


def simd_installed() -> bool:
    try:
        metadata.distribution("pillow-simd")
    except metadata.PackageNotFoundError:
        return False
    return True


def photo(path: Path) -> bytes:
    """The benchmark image: read it, or generate it (and write it) on the first run."""
    if not path.exists():
        from testkit.imagegen import photo_jpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo_jpeg(4000, 3000, orientation=6))
    return path.read_bytes()


def half_scale(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (image.width // 2, image.height // 2))
        image.load()
        return image.copy()


def timed(functions: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each function: one warm-up, then rounds interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():
        function()
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def _tjbench_perf(args: list[str], column: int) -> float:
    """Megapixels/s from tjbench -quiet (its column `column` of the result row)."""
    output = subprocess.run(
        ["tjbench", *args, *TJBENCH_OPTIONS],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = [line.split() for line in output.splitlines() if line.startswith("RGB")]
    if not rows:
        raise RuntimeError(f"unexpected tjbench output:\n{output}")
    return float(rows[-1][column])


def tjbench_floor(image_path: Path, output_size: tuple[int, int], resize_ms: float) -> dict:
    width, height = output_size
    with Image.open(image_path) as source:
        source_pixels = source.width * source.height
    # Decode: all of the file's pixels are counted in tjbench's Mpixels/s, scaled or not.
    row = _tjbench_perf([str(image_path), "-scale", "1/2"], column=-1)
    decode_ms = source_pixels / (row * 1e6) * 1e3
    with tempfile.TemporaryDirectory() as folder:
        ppm = Path(folder) / "output-size.ppm"
        with Image.open(image_path) as source:
            source.draft("RGB", (source.width // 2, source.height // 2))
            source.convert("RGB").resize((width, height)).save(ppm)
        perf = _tjbench_perf(
            [str(ppm), str(OPTIONS.quality), "-subsamp", "420", "-progressive", "-componly"],
            column=6,
        )
    encode_ms = width * height / (perf * 1e6) * 1e3
    return {
        "version": _tjbench_version(),
        "decode_half_ms": decode_ms,
        "encode_ms": encode_ms,
        "resize_ms": resize_ms,
        "floor_ms": decode_ms + encode_ms + resize_ms,
    }


def _tjbench_version() -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "libjpeg-turbo-progs"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except OSError:
        return None
    return re.sub(r"^\d+:", "", out) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="12 MP JPEG; made if absent")
    parser.add_argument("--rounds", type=int, default=3 if QUICK else 9)
    parser.add_argument("--tjbench", action="store_true", help="also measure the tjbench floor")
    args = parser.parse_args(argv)

    data = photo(args.image)
    output = compress(data, OPTIONS)
    naive_output = naive(data)
    with Image.open(io.BytesIO(naive_output)) as result:
        assert result.size == (output.width, output.height), (result.size, output)
    half = half_scale(data)
    stored_size = target_size(half.width, half.height, OPTIONS.max_dimension)
    medians = timed(
        {
            "compress": lambda: project(data),
            "naive": lambda: naive(data),
            "resize": lambda: half.resize(stored_size, Image.Resampling.LANCZOS),
        },
        args.rounds,
    )
    result: dict[str, Any] = {
        "pil_version": PIL.__version__,
        "simd": simd_installed(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "rounds": args.rounds,
        "options": repr(OPTIONS),
        "source_bytes": len(data),
        "source_size": [output.source_width, output.source_height],
        "output_size": [output.width, output.height],
        "compress_ms": medians["compress"],
        "naive_ms": medians["naive"],
        "resize_ms": medians["resize"],
        "naive_over_compress": medians["naive"] / medians["compress"],
    }
    if args.tjbench:
        if shutil.which("tjbench") is None:
            result["tjbench"] = None  # libjpeg-turbo-progs is not installed: skipped
        else:
            floor = tjbench_floor(args.image, stored_size, medians["resize"])
            floor["fraction"] = floor["floor_ms"] / medians["compress"]
            result["tjbench"] = floor
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
