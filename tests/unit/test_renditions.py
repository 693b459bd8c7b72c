"""compressor.renditions: one source to its ladder of sizes in each format, from one decode.

Every output is reopened and inspected: its size, format, mode and metadata, and, for tagged
sources, its colours (ΔE2000 against LittleCMS's sRGB conversion, as tests/unit/test_colour.py).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from compressor import renditions as renditions_module
from compressor.rejected import ImageRejected
from compressor.renditions import (
    FORMATS,
    RenditionOptions,
    available_formats,
    ladder,
    missing_encoders,
    render,
)
from testkit import colour as tc
from testkit import imagegen

ROOT = Path(__file__).resolve().parents[2]
ALL_FORMATS = RenditionOptions(formats=("jpeg", "webp", "avif"))


def reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- The ladder's sizes (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((4000, 3000), [(320, 240), (640, 480), (1024, 768), (1600, 1200)]),
        ((3000, 4000), [(240, 320), (480, 640), (768, 1024), (1200, 1600)]),
        ((1200, 900), [(320, 240), (640, 480), (1024, 768)]),  # never upscaled
        ((1024, 500), [(320, 156), (640, 312), (1024, 500)]),  # a size equal to the source's
        ((300, 200), [(300, 200)]),  # smaller than the smallest: one, at its own size
        ((320, 10), [(320, 10)]),
    ],
)
def test_the_ladder_has_every_size_not_larger_than_the_source(size, expected):
    assert ladder(*size, (320, 640, 1024, 1600)) == expected


def test_options_refuse_unordered_sizes_unknown_formats_and_bad_qualities():
    for bad in (
        {"sizes": ()},
        {"sizes": (640, 320)},
        {"sizes": (320, 320)},
        {"formats": ()},
        {"formats": ("jpeg", "jpeg")},
        {"formats": ("gif",)},
        {"quality_webp": 0},
        {"quality_avif": 101},
        {"avif_speed": 11},
    ):
        with pytest.raises(ValueError, match="must"):
            RenditionOptions(**bad)


# --- The set one source yields ------------------------------------------------------------------


def test_a_photo_yields_each_size_in_each_format_in_order():
    rendered = render(imagegen.photo_jpeg(2000, 1500), ALL_FORMATS)
    got = [(r.format, r.width, r.height) for r in rendered.renditions]
    sizes = [(320, 240), (640, 480), (1024, 768), (1600, 1200)]
    assert got == [(fmt, w, h) for fmt in ("jpeg", "webp", "avif") for w, h in sizes]
    assert (rendered.source_format, rendered.source_width, rendered.source_height) == (
        "JPEG",
        2000,
        1500,
    )
    for r in rendered.renditions:
        image = reopen(r.data)
        assert image.format == FORMATS[r.format][0]
        assert image.size == (r.width, r.height)
        assert (r.content_type, r.extension) == FORMATS[r.format][1:]
        assert image.mode == "RGB"


def test_no_rendition_carries_any_of_the_sources_metadata():
    source = imagegen.photo_jpeg(1200, 900, orientation=6)
    for r in render(source, ALL_FORMATS).renditions:
        image = reopen(r.data)
        for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment"):
            assert key not in image.info, (r.format, key)
        exif = image.getexif()
        assert len(exif) == 0, r.format
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo)


def test_a_rotated_photo_yields_upright_sizes():
    # Stored 1200x900 with EXIF orientation 6 (rotate 90°): shown 900x1200.
    rendered = render(imagegen.photo_jpeg(1200, 900, orientation=6), RenditionOptions())
    jpegs = [(r.width, r.height) for r in rendered.renditions if r.format == "jpeg"]
    assert jpegs == [(240, 320), (480, 640), (768, 1024)]


def test_a_small_source_yields_one_rendition_per_format_at_its_own_size():
    rendered = render(imagegen.photo_jpeg(200, 150), RenditionOptions())
    assert [(r.format, r.width, r.height) for r in rendered.renditions] == [
        ("jpeg", 200, 150),
        ("webp", 200, 150),
    ]


def test_transparency_is_kept_in_webp_and_avif_and_flattened_in_jpeg():
    rendered = render(imagegen.png_with_alpha(800, 600), ALL_FORMATS)
    modes = {(r.format, reopen(r.data).mode) for r in rendered.renditions}
    assert modes == {("jpeg", "RGB"), ("webp", "RGBA"), ("avif", "RGBA")}


def test_each_format_is_encoded_at_its_own_quality():
    source = imagegen.photo_jpeg(1000, 750)
    low = RenditionOptions(
        sizes=(640,),
        formats=("jpeg", "webp", "avif"),
        quality_jpeg=30,
        quality_webp=30,
        quality_avif=30,
    )
    high = RenditionOptions(
        sizes=(640,),
        formats=("jpeg", "webp", "avif"),
        quality_jpeg=90,
        quality_webp=90,
        quality_avif=90,
    )
    low_bytes = [len(r.data) for r in render(source, low).renditions]
    high_bytes = [len(r.data) for r in render(source, high).renditions]
    assert all(lo < hi for lo, hi in zip(low_bytes, high_bytes, strict=True))


def test_a_bad_source_is_rejected_as_the_single_output_is():
    with pytest.raises(ImageRejected) as caught:
        render(b"not an image at all", RenditionOptions())
    assert caught.value.reason == "not_an_image"
    with pytest.raises(ImageRejected) as caught:
        render(imagegen.bomb_png(), RenditionOptions(max_pixels=1000))
    assert caught.value.reason == "decompression_bomb"


# --- One decode; each size from the next larger -----------------------------------------------


def test_one_decode_and_each_smaller_size_resized_from_the_next_larger(monkeypatch):
    decodes: list[int] = []
    real_decode = renditions_module.decode

    def counting_decode(data, max_dimension, max_pixels):
        decodes.append(max_dimension)
        return real_decode(data, max_dimension, max_pixels)

    resizes: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real_resize = Image.Image.resize

    def recording_resize(self, size, *args, **kwargs):
        resizes.append((self.size, tuple(size)))
        return real_resize(self, size, *args, **kwargs)

    source = imagegen.photo_jpeg(4000, 3000)
    monkeypatch.setattr(renditions_module, "decode", counting_decode)
    with monkeypatch.context() as patched:
        patched.setattr(Image.Image, "resize", recording_resize)
        rendered = render(source, RenditionOptions())
    rendered_sizes = sorted({(r.width, r.height) for r in rendered.renditions})

    assert decodes == [1600]  # drafted once, for the largest size
    # After the decode's own resize to 1600 px, every resize starts from the next larger size.
    ladder_resizes = [(src, dst) for src, dst in resizes if max(src) <= 1600]
    assert ladder_resizes == [
        ((1600, 1200), (1024, 768)),
        ((1024, 768), (640, 480)),
        ((640, 480), (320, 240)),
    ]
    assert all(max(src) <= 2000 for src, _ in resizes)  # never from the 12 MP image
    assert rendered_sizes == [(320, 240), (640, 480), (1024, 768), (1600, 1200)]


# --- Colour, in every rendition -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["display-p3-jpeg", "adobe-rgb-jpeg", "prophoto-16bit-png", "cmyk-jpeg-adobe-no-profile"],
)
def test_every_rendition_of_a_tagged_source_shows_its_colours_in_srgb(name):
    sources = tc.tagged_sources()
    source = sources[name]
    options = RenditionOptions(sizes=(192, 384), formats=("jpeg", "webp", "avif"))
    for r in render(source.data, options).renditions:
        image = reopen(r.data)
        assert "icc_profile" not in image.info
        errors = tc.patch_errors(image, source)
        assert max(errors) <= 3.0, (r.format, r.width, max(errors))


# --- Formats this build can make ----------------------------------------------------------------


def test_this_build_encodes_jpeg_webp_and_avif():
    assert available_formats() == {"jpeg", "webp", "avif"}


def test_formats_the_build_cannot_encode_are_named_with_their_setting():
    assert missing_encoders(("jpeg", "webp"), frozenset({"jpeg", "webp"})) is None
    message = missing_encoders(("jpeg", "avif"), frozenset({"jpeg", "webp"}))
    assert message is not None
    assert "IMAGE_OUTPUT_FORMATS" in message
    assert "avif" in message


def test_a_worker_asked_for_avif_without_the_plugin_stops_at_start_up():
    # The plugin made unimportable, as on a build without it: the worker must not start.
    code = (
        "import sys; sys.modules['pillow_avif'] = None; sys.argv = ['run_workers.py'];"
        "import run_workers; sys.exit(run_workers.main())"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "IMAGE_OUTPUT_FORMATS": "jpeg,avif"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2, finished.stderr
    assert "IMAGE_OUTPUT_FORMATS" in finished.stderr
    assert "avif" in finished.stderr


def test_the_avif_plugin_cannot_pull_plain_pillow_in():
    from importlib.metadata import requires

    runtime = [r for r in requires("pillow-avif-plugin") or [] if "extra ==" not in r]
    assert not [r for r in runtime if r.lower().startswith("pillow")]
    guard = subprocess.run(
        [sys.executable, "scripts/check_pillow_simd.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert guard.returncode == 0, guard.stderr
