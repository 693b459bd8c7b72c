"""The rendition ladder: what it costs, what each format buys, and how it compares with libvips.

Side by side in one run, in interleaved rounds (each round runs every contender once, the order
rotating from round to round so none always runs first or last), medians of the rounds and of the
per-round ratios:

1. **Ladder cost** on a 12 MP camera-like photo JPEG (EXIF orientation 6): the default ladder
   (320, 640, 1024, 1600) in one format, ``render()``, for JPEG, WebP and AVIF, against today's
   single 1600 px JPEG, ``compress()``. Target: the JPEG ladder ≤ 1.4× ``compress()``.
2. **libvips**: the same JPEG and WebP ladders made by libvips (bench/vips_ladder.py, its own
   process under bench/.venv-vips, one thread) from the same file at the same qualities, in the
   same rounds. Target: libvips's time / ours ≥ 1.2× for the JPEG ladder.
3. **mozjpeg**: the lossless pass of ``mozjpeg-lossless-optimization`` over the JPEG ladder's
   outputs (same helper process, same rounds): time added against bytes saved.
4. **Efficiency** on a corpus of photo-like images (testkit/photo_corpus.py): mean bytes per
   rendition and mean SSIM (bench/image_quality.py) against the sRGB reference, the source
   resized to the rendition's size with the same LANCZOS, unencoded; JPEG at its default
   quality, then WebP and AVIF over a quality sweep, to find the lowest quality of each whose
   mean SSIM reaches JPEG's, and so the bytes each saves at equal quality.

The figures are CPU time of the process doing the work (all its threads; for ours the
benchmark's, around the call alone; for libvips and mozjpeg the helper's own clock, so the
pipe's cost is in neither): on two cores shared with other work, CPU time per image is steadier
than wall time, and it is what a pool of one image per core is bound by. Wall time is recorded too.
Never a wall-clock threshold: a missed target is reported (bench/report_images.py), never failed.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image, ImageOps

from bench.conftest import QUICK, ROOT, write_result
from bench.framed import Helper
from compressor.compress import CompressOptions, compress
from compressor.renditions import PROGRESSIVE_FROM, RenditionOptions, render
from testkit.imagegen import photo_jpeg
from testkit.photo_corpus import SCENES, corpus

VENV = ROOT / "bench" / ".venv-vips"
VENV_PYTHON = VENV / "bin" / "python"
DEFAULTS = RenditionOptions()  # the contract's defaults: 4 sizes, qualities 80 / 79 / 63
FORMATS = ("jpeg", "webp", "avif")
VIPS_FORMATS = ("jpeg", "webp")
COMPRESS = CompressOptions(max_dimension=DEFAULTS.sizes[-1], quality=DEFAULTS.quality_jpeg)
ROUNDS = 3 if QUICK else 11
# Corpus and search. Quick: two scenes, the crossing interpolated within the first bracket; full:
# every scene, the bracket then halved down to the exact integer quality.
CORPUS = ("fabric", "portrait") if QUICK else tuple(SCENES)
# WebP and AVIF are searched from their defaults, a STEP at a time until the target is bracketed.
STEP = 8
BISECT = not QUICK

RESULTS: dict[str, Any] = {}
# The 12 MP photo's ladders, ours and libvips's, from the timing test for the quality test.
LADDERS: dict[str, list[bytes]] = {}


# -- helpers: processes under bench/.venv-vips --------------------------------------------------


def _helper(script: str) -> Helper:
    if not VENV_PYTHON.exists():
        pytest.fail(
            f"{VENV_PYTHON} does not exist: scripts/bench creates bench/.venv-vips (pyvips,"
            " pyvips-binary, numpy, scipy, mozjpeg-lossless-optimization, as its"
            " VIPS_REQUIREMENTS pin them)",
            pytrace=False,
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VIPS_CONCURRENCY": "1",  # one image on one core, as the worker's pool runs them
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    return Helper([str(VENV_PYTHON), str(ROOT / "bench" / script)], env=env, cwd=str(ROOT))


@pytest.fixture(scope="module")
def vips() -> Iterator[Helper]:
    with _helper("vips_ladder.py") as helper:
        yield helper


@pytest.fixture(scope="module")
def metric() -> Iterator[Helper]:
    with _helper("image_quality.py") as helper:
        yield helper


@pytest.fixture(scope="module")
def photo() -> bytes:
    return photo_jpeg(4000, 3000, orientation=6)


@pytest.fixture(scope="module", autouse=True)
def _write_results() -> Iterator[None]:
    yield
    write_result("renditions", RESULTS)


# -- timing: interleaved rounds -----------------------------------------------------------------


@dataclass
class Samples:
    """Wall and CPU milliseconds of one contender, one entry a round."""

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, wall_ms: float, cpu_ms: float) -> None:
        self.wall_ms.append(wall_ms)
        self.cpu_ms.append(cpu_ms)

    def summary(self) -> dict[str, float]:
        return {
            "wall_ms": statistics.median(self.wall_ms),
            "cpu_ms": statistics.median(self.cpu_ms),
        }


def _ratio_rounds(numerator: Samples, denominator: Samples, clock: str) -> list[float]:
    tops, bottoms = getattr(numerator, clock), getattr(denominator, clock)
    return [top / bottom for top, bottom in zip(tops, bottoms, strict=True)]


def _ratio(numerator: Samples, denominator: Samples) -> dict[str, Any]:
    """Median of the per-round ratios, CPU (the figure) and wall."""
    cpu = _ratio_rounds(numerator, denominator, "cpu_ms")
    wall = _ratio_rounds(numerator, denominator, "wall_ms")
    return {
        "cpu": statistics.median(cpu),
        "wall": statistics.median(wall),
        "cpu_rounds": cpu,
        "wall_rounds": wall,
    }


def _ladder_options(fmt: str) -> RenditionOptions:
    return RenditionOptions(
        sizes=DEFAULTS.sizes,
        formats=(fmt,),  # type: ignore[arg-type]
        quality_jpeg=DEFAULTS.quality_jpeg,
        quality_webp=DEFAULTS.quality_webp,
        quality_avif=DEFAULTS.quality_avif,
        avif_speed=DEFAULTS.avif_speed,
        max_pixels=DEFAULTS.max_pixels,
    )


def _vips_request(key: str, fmt: str, **extra: Any) -> dict[str, Any]:
    return {
        "op": "ladder",
        "key": key,
        "format": fmt,
        "sizes": list(DEFAULTS.sizes),
        "quality": DEFAULTS.quality(fmt),
        "progressive_from": PROGRESSIVE_FROM,
        **extra,
    }


Run = Callable[[], tuple[float, float]]


def _contenders(vips: Helper, data: bytes, key: str, outputs: dict[str, Any]) -> dict[str, Run]:
    """name -> one timed run, returning (wall ms, CPU ms) and leaving its output in
    ``outputs[name]`` (the figures beside the times come from the timed runs themselves)."""
    ladders = {fmt: _ladder_options(fmt) for fmt in FORMATS}
    jpegs = [r.data for r in render(data, ladders["jpeg"]).renditions]

    def ours(name: str, work: Callable[[], Any]) -> Run:
        def run() -> tuple[float, float]:
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = work()
            return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3

        return run

    def helper(name: str, header: dict[str, Any], parts: Sequence[bytes] = ()) -> Run:
        def run() -> tuple[float, float]:
            # The outputs come back over the pipe after the helper's clock has stopped.
            outputs[name] = vips.call({**header, "return_data": True}, parts)
            return outputs[name][0]["wall_ms"], outputs[name][0]["cpu_ms"]

        return run

    contenders = {"compress": ours("compress", lambda: compress(data, COMPRESS))}
    for fmt, options in ladders.items():
        name = f"ladder_{fmt}"
        contenders[name] = ours(name, lambda options=options: render(data, options))
    for fmt in VIPS_FORMATS:
        contenders[f"vips_{fmt}"] = helper(f"vips_{fmt}", _vips_request(key, fmt))
    contenders["mozjpeg"] = helper("mozjpeg", {"op": "mozjpeg"}, jpegs)
    return contenders


def _interleaved(contenders: dict[str, Run], rounds: int) -> dict[str, Samples]:
    samples = {name: Samples() for name in contenders}
    names = list(contenders)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].add(*contenders[name]())
    return samples


def _decoded(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def test_ladder_cost_libvips_and_mozjpeg(vips: Helper, photo: bytes) -> None:
    about, _ = vips.call({"op": "about"})
    # Warm-up on a small photo: codecs loaded, first-call costs paid, outside the rounds.
    small = photo_jpeg(1200, 900, orientation=6)
    vips.send({"op": "source", "key": "warm-up"}, [small])
    for run in _contenders(vips, small, "warm-up", {}).values():
        run()
    vips.send({"op": "source", "key": "photo"}, [photo])
    outputs: dict[str, Any] = {}
    samples = _interleaved(_contenders(vips, photo, "photo", outputs), ROUNDS)

    ours = {fmt: outputs[f"ladder_{fmt}"].renditions for fmt in FORMATS}
    single = outputs["compress"]
    theirs = {fmt: outputs[f"vips_{fmt}"] for fmt in VIPS_FORMATS}
    jpegs = [r.data for r in ours["jpeg"]]
    optimised, optimised_data = outputs["mozjpeg"]
    # Lossless means the same pixels: checked, not assumed.
    assert all(_decoded(a) == _decoded(b) for a, b in zip(jpegs, optimised_data, strict=True)), (
        "the mozjpeg pass changed pixels"
    )
    for fmt in VIPS_FORMATS:
        sizes = [(r["width"], r["height"]) for r in theirs[fmt][0]["renditions"]]
        assert sizes == [(r.width, r.height) for r in ours[fmt]], (fmt, sizes)

    RESULTS["ladder"] = {
        "source": "photo_jpeg(4000, 3000, orientation=6)",
        "source_bytes": len(photo),
        "sizes": list(DEFAULTS.sizes),
        "qualities": {fmt: DEFAULTS.quality(fmt) for fmt in FORMATS},
        "avif_speed": DEFAULTS.avif_speed,
        "rounds": ROUNDS,
        "times": {name: s.summary() for name, s in samples.items()},
        "compress_bytes": len(single.data),
        "compress_size": [single.width, single.height],
        "bytes": {fmt: [len(r.data) for r in renditions] for fmt, renditions in ours.items()},
        "rendition_sizes": [[r.width, r.height] for r in ours["jpeg"]],
        "jpeg_ladder_over_compress": _ratio(samples["ladder_jpeg"], samples["compress"]),
        "over_compress": {
            fmt: _ratio(samples[f"ladder_{fmt}"], samples["compress"]) for fmt in FORMATS
        },
    }
    RESULTS["vips"] = {
        "about": about,
        "concurrency": about.get("concurrency"),
        "vips_over_ours": {
            fmt: _ratio(samples[f"vips_{fmt}"], samples[f"ladder_{fmt}"]) for fmt in VIPS_FORMATS
        },
        "bytes": {fmt: [r["bytes"] for r in theirs[fmt][0]["renditions"]] for fmt in VIPS_FORMATS},
    }
    RESULTS["mozjpeg"] = {
        "version": about.get("mozjpeg_lossless_optimization"),
        "bytes_before": [len(j) for j in jpegs],
        "bytes_after": optimised["bytes"],
        "saved_share": 1 - sum(optimised["bytes"]) / sum(len(j) for j in jpegs),
        "over_jpeg_ladder": _ratio(samples["mozjpeg"], samples["ladder_jpeg"]),
        "lossless": True,
    }
    for fmt in VIPS_FORMATS:
        LADDERS[f"ours_{fmt}"] = [r.data for r in ours[fmt]]
        LADDERS[f"vips_{fmt}"] = theirs[fmt][1]


# -- efficiency: bytes and SSIM on the corpus ----------------------------------------------------


def reference_image(data: bytes) -> Image.Image:
    """The source fully decoded, upright, in sRGB: the corpus and the photo are untagged (sRGB
    by definition), which the assertion keeps true."""
    with Image.open(io.BytesIO(data)) as source:
        assert "icc_profile" not in source.info, "a tagged source needs its sRGB conversion here"
        return ImageOps.exif_transpose(source).convert("RGB")


class Quality:
    """Sends references and renditions to the SSIM helper; collects the scores by tag."""

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.pending = 0

    def reference(self, key: str, image: Image.Image) -> None:
        header = {"op": "reference", "key": key, "width": image.width, "height": image.height}
        self.helper.send(header, [image.tobytes()])

    def references(self, name: str, source: Image.Image, sizes: Sequence[tuple[int, int]]) -> None:
        for width, height in sizes:
            resized = source.resize((width, height), Image.Resampling.LANCZOS)
            self.reference(f"{name}:{width}x{height}", resized)

    def compare(self, name: str, encoded: bytes, tag: Any) -> None:
        with Image.open(io.BytesIO(encoded)) as image:
            rgb = image.convert("RGB")
        key = f"{name}:{rgb.width}x{rgb.height}"
        header = {"op": "ssim", "key": key, "tag": tag, "width": rgb.width, "height": rgb.height}
        self.helper.send(header, [rgb.tobytes()])
        self.pending += 1

    def collect(self) -> dict[Any, float]:
        scores = {}
        while self.pending:
            answer, _ = self.helper.receive()
            scores[_hashable(answer["tag"])] = answer["ssim"]
            self.pending -= 1
        return scores


def _hashable(tag: Any) -> Any:
    return tuple(tag) if isinstance(tag, list) else tag


@dataclass
class Point:
    """One format at one quality over the corpus: every rendition's size (longest side), bytes
    and SSIM."""

    fmt: str
    quality: int
    longest: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)

    def add(self, longest: int, size: int, score: float) -> None:
        self.longest.append(longest)
        self.bytes.append(size)
        self.ssim.append(score)

    def summary(self) -> dict[str, Any]:
        by_size = {}
        for longest in sorted(set(self.longest)):
            picked = [i for i, value in enumerate(self.longest) if value == longest]
            by_size[str(longest)] = {
                "mean_bytes": statistics.fmean(self.bytes[i] for i in picked),
                "mean_ssim": statistics.fmean(self.ssim[i] for i in picked),
            }
        return {
            "format": self.fmt,
            "quality": self.quality,
            "renditions": len(self.bytes),
            "mean_bytes": statistics.fmean(self.bytes),
            "mean_ssim": statistics.fmean(self.ssim),
            "by_size": by_size,
        }


def _options(qualities: dict[str, int]) -> RenditionOptions:
    return RenditionOptions(
        sizes=DEFAULTS.sizes,
        formats=tuple(qualities),  # type: ignore[arg-type]
        quality_jpeg=qualities.get("jpeg", DEFAULTS.quality_jpeg),
        quality_webp=qualities.get("webp", DEFAULTS.quality_webp),
        quality_avif=qualities.get("avif", DEFAULTS.quality_avif),
        avif_speed=DEFAULTS.avif_speed,
        max_pixels=DEFAULTS.max_pixels,
    )


def evaluate(quality: Quality, sources: Sequence[Any], qualities: dict[str, int]) -> dict:
    """Each of ``qualities``' formats at its quality over the corpus, from one render per source
    (the formats share its decode): fmt -> Point. The SSIM helper scores each source's
    renditions while the next source renders."""
    points = {fmt: Point(fmt, q) for fmt, q in qualities.items()}
    sizes: dict[Any, int] = {}
    for source in sources:
        for rendition in render(source.data, _options(qualities)).renditions:
            tag = (source.name, rendition.format, max(rendition.width, rendition.height))
            sizes[tag] = len(rendition.data)
            quality.compare(source.name, rendition.data, list(tag))
    for tag, score in sorted(quality.collect().items()):
        points[tag[1]].add(tag[2], sizes[tag], score)
    return points


def _score(point: Point, size: int | None) -> float:
    """Mean SSIM of a point over every rendition, or over those of one size (longest side)."""
    if size is None:
        return statistics.fmean(point.ssim)
    return statistics.fmean(s for s, n in zip(point.ssim, point.longest, strict=True) if n == size)


def _mean_bytes(point: Point, size: int | None) -> float:
    if size is None:
        return statistics.fmean(point.bytes)
    return statistics.fmean(b for b, n in zip(point.bytes, point.longest, strict=True) if n == size)


def _crossing(points: dict[int, Point], target: float, size: int | None = None) -> dict[str, Any]:
    """The lowest measured quality whose mean SSIM (over every rendition, or over one ``size``)
    reaches ``target``, and the bracket below it; the interpolated quality where the sweep
    crosses the target (an estimate when the bracket is wider than one step)."""
    ordered = sorted(points)
    meeting = [q for q in ordered if _score(points[q], size) >= target]
    lowest = min(meeting) if meeting else None
    below = max((q for q in ordered if lowest is None or q < lowest), default=None)
    estimate = None
    if lowest is not None and below is not None:
        s_low, s_high = _score(points[below], size), _score(points[lowest], size)
        fraction = (target - s_low) / (s_high - s_low) if s_high != s_low else 1.0
        estimate = below + fraction * (lowest - below)
    return {
        "lowest_meeting": lowest,
        "highest_below": below,
        "exact": lowest is not None and below is not None and lowest - below == 1,
        "interpolated": estimate,
    }


def _next_probe(points: dict[int, Point], target: float, size: int | None) -> int | None:
    """The next quality to measure for one search, or None when it is done: from the default a
    STEP at a time towards the target until the two sides are bracketed, then (full mode)
    halving the bracket down to one quality step."""
    bracket = _crossing(points, target, size)
    low, high = bracket["highest_below"], bracket["lowest_meeting"]
    if high is None:  # nothing measured reaches the target yet: higher
        return min(100, max(points) + STEP) if max(points) < 100 else None
    if low is None:  # everything measured reaches it: lower
        return max(1, min(points) - STEP) if min(points) > 1 else None
    if BISECT and high - low > 1:
        return (low + high) // 2
    return None


@dataclass(frozen=True)
class Search:
    """Find the lowest quality of ``fmt`` whose mean SSIM over every rendition (``size`` None)
    or over those of one size reaches ``target``."""

    fmt: str
    target: float
    size: int | None = None


def _sweep(
    quality: Quality,
    sources: Sequence[Any],
    searches: Sequence[Search],
    measured: dict[str, dict[int, Point]],
) -> dict[str, dict[int, Point]]:
    """The searches run from the points in ``measured`` (the defaults), which they share, WebP
    and AVIF in lockstep: one render of each source serves both formats' next probes."""
    while True:
        probes: dict[str, int] = {}
        for search in searches:
            if search.fmt in probes:
                continue  # one probe a format a step: the other search goes next step
            probe = _next_probe(measured[search.fmt], search.target, search.size)
            if probe is not None and probe not in measured[search.fmt]:
                probes[search.fmt] = probe
        if not probes:
            return measured
        for fmt, point in evaluate(quality, sources, probes).items():
            measured[fmt][point.quality] = point


def _format_result(
    points: dict[int, Point], default_q: int, jpeg: Point, target: float, size: int | None
) -> dict[str, Any]:
    """One format against JPEG at ``target``, over every rendition or over one size."""
    crossing = _crossing(points, target, size)
    lowest = crossing["lowest_meeting"]
    jpeg_bytes = _mean_bytes(jpeg, size)
    default = points[default_q]
    return {
        "target_ssim": target,
        "default_quality": default_q,
        "default_ssim": _score(default, size),
        "default_meets": _score(default, size) >= target,
        **crossing,
        "saved_share_at_default": 1 - _mean_bytes(default, size) / jpeg_bytes,
        "saved_share_at_equal_quality": (
            1 - _mean_bytes(points[lowest], size) / jpeg_bytes if lowest is not None else None
        ),
    }


def test_efficiency_on_corpus(metric: Helper, vips: Helper, photo: bytes) -> None:
    quality = Quality(metric)
    sources = corpus(CORPUS)
    for source in sources:
        sizes = [
            (r.width, r.height) for r in render(source.data, _options({"jpeg": 80})).renditions
        ]
        quality.references(source.name, reference_image(source.data), sizes)

    defaults = {fmt: DEFAULTS.quality(fmt) for fmt in FORMATS}
    at_defaults = evaluate(quality, sources, defaults)
    jpeg = at_defaults["jpeg"]
    target = _score(jpeg, None)
    # The largest size too: it carries most of the bytes, and a mean over every rendition
    # weighs a 320 px thumbnail as much as it. Searched in full mode only (quick: what the
    # overall search measured).
    largest = DEFAULTS.sizes[-1]
    target_largest = _score(jpeg, largest)
    searches = [Search(fmt, target) for fmt in ("webp", "avif")]
    if BISECT:
        searches += [Search(fmt, target_largest, largest) for fmt in ("webp", "avif")]
    known = {fmt: {defaults[fmt]: at_defaults[fmt]} for fmt in ("webp", "avif")}
    measured = _sweep(quality, sources, searches, known)

    formats: dict[str, Any] = {"jpeg": {"default": jpeg.summary()}}
    for fmt, points in measured.items():
        overall = _format_result(points, defaults[fmt], jpeg, target, None)
        lowest = overall["lowest_meeting"]
        formats[fmt] = {
            "default": points[defaults[fmt]].summary(),
            "sweep": [points[q].summary() for q in sorted(points)],
            **overall,
            "at_equal_quality": points[lowest].summary() if lowest is not None else None,
            "largest": {
                "size": largest,
                **_format_result(points, defaults[fmt], jpeg, target_largest, largest),
            },
        }

    jpegs = [r.data for s in sources for r in render(s.data, _options({"jpeg": 80})).renditions]
    optimised, _ = vips.call({"op": "mozjpeg"}, jpegs)
    RESULTS["efficiency"] = {
        "corpus": [
            {"name": s.name, "width": s.width, "height": s.height, "bytes": len(s.data)}
            for s in sources
        ],
        "metric": "SSIM (Wang et al. 2004: 11-tap Gaussian, sigma 1.5), mean of R, G and B",
        "reference": "source decoded in full, upright, resized to the rendition's size with"
        " LANCZOS, unencoded",
        "target_ssim": target,
        "target_ssim_largest": target_largest,
        "bisected": BISECT,
        "formats": formats,
        "mozjpeg_saved_share": 1 - sum(optimised["bytes"]) / sum(len(j) for j in jpegs),
    }
    if LADDERS:  # the ladder test ran (not deselected with -k)
        RESULTS["parity"] = _parity(quality, photo)


def _parity(quality: Quality, photo: bytes) -> dict[str, Any]:
    """SSIM of the 12 MP photo's ladders, ours and libvips's, against the same references: the
    byte figures compare like with like only at a like quality."""
    sizes = [Image.open(io.BytesIO(data)).size for data in LADDERS["ours_jpeg"]]
    quality.references("photo", reference_image(photo), sizes)
    for name, ladder in LADDERS.items():
        for index, data in enumerate(ladder):
            quality.compare("photo", data, [name, index])
    scores: dict[str, list[float]] = {}
    for tag, score in quality.collect().items():
        scores.setdefault(tag[0], []).append(score)
    return {
        name: {
            "mean_ssim": statistics.fmean(scores[name]),
            "bytes": sum(len(d) for d in ladder),
        }
        for name, ladder in LADDERS.items()
    }
