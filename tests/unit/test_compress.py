"""compressor.compress over generated inputs; every output is reopened and inspected."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat

from compressor import compress as compress_module
from compressor import decode as decode_module
from compressor.compress import (
    CompressedImage,
    CompressOptions,
    ImageRejected,
    compress,
    init_worker,
    target_size,
)
from compressor.renditions import PROGRESSIVE_FROM
from testkit import colour, imagegen

ROOT = Path(__file__).resolve().parents[2]

SMALL = CompressOptions(max_dimension=400)


def reopen(result: CompressedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def is_red(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 70 and b < 70


def corners(image: Image.Image, inset: int = 5) -> dict[str, tuple[int, ...]]:
    w, h = image.size
    return {
        "top_left": image.getpixel((inset, inset)),
        "top_right": image.getpixel((w - 1 - inset, inset)),
        "bottom_left": image.getpixel((inset, h - 1 - inset)),
        "bottom_right": image.getpixel((w - 1 - inset, h - 1 - inset)),
    }


def assert_clean_jpeg(result: CompressedImage) -> Image.Image:
    image = reopen(result)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    # Progressive from PROGRESSIVE_FROM up, where it saves bytes and shows sooner.
    assert bool(image.info.get("progressive")) == (max(image.size) >= PROGRESSIVE_FROM)
    assert (result.content_type, result.extension) == ("image/jpeg", "jpg")
    assert image.size == (result.width, result.height)
    assert_no_metadata(image)
    return image


def assert_no_metadata(image: Image.Image) -> None:
    for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment"):
        assert key not in image.info
    exif = image.getexif()
    assert len(exif) == 0
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)


# --- Size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_dimension", "expected"),
    [
        ((4000, 3000), 1600, (1600, 1200)),
        ((3000, 4000), 1600, (1200, 1600)),
        ((1600, 900), 1600, (1600, 900)),
        ((1601, 1), 1600, (1600, 1)),
        ((1, 5000), 1600, (1, 1600)),
        ((8, 6), 1600, (8, 6)),
        ((2000, 2000), 1600, (1600, 1600)),
        ((3001, 2001), 1000, (1000, 667)),
    ],
)
def test_target_size_caps_longest_side_and_never_enlarges(size, max_dimension, expected):
    assert target_size(*size, max_dimension) == expected


def test_target_size_of_swapped_input_is_swapped_output():
    # What lets the compressor size the stored image before applying a 90° EXIF rotation.
    assert target_size(3000, 4001, 1600) == target_size(4001, 3000, 1600)[::-1]


def test_large_jpeg_is_downscaled_so_longest_side_is_max_dimension():
    result = compress(imagegen.photo_jpeg(4000, 3000), CompressOptions())
    image = assert_clean_jpeg(result)
    assert image.size == (1600, 1200)
    assert (result.source_format, result.source_width, result.source_height) == (
        "JPEG",
        4000,
        3000,
    )


@pytest.mark.parametrize(("width", "height"), [(8, 6), (400, 300), (399, 1)])
def test_image_at_or_below_max_dimension_keeps_its_size(width, height):
    data = imagegen.photo_jpeg(width, height, marker=False)
    assert reopen(compress(data, SMALL)).size == (width, height)


def test_tiny_png_is_not_upscaled():
    result = compress(imagegen.tiny_png(), CompressOptions())
    image = assert_clean_jpeg(result)
    assert image.size == (8, 6)
    assert result.source_format == "PNG"


def test_jpeg_draft_downscale_matches_full_decode_and_lanczos():
    # DCT-domain scaling must not shift, stretch or blur the picture noticeably compared with
    # decoding every pixel; an off-by-one in the draft box shows up as edge differences.
    data = imagegen.photo_jpeg(3001, 2001)
    result = compress(data, CompressOptions(max_dimension=1000, quality=95))
    reference = Image.open(io.BytesIO(data)).resize(
        (result.width, result.height), Image.Resampling.LANCZOS
    )
    difference = ImageStat.Stat(ImageChops.difference(reopen(result), reference))
    assert max(difference.mean) < 3


# --- Orientation --------------------------------------------------------------------------


def test_exif_orientation_6_rotates_large_photo_and_drops_gps():
    data = imagegen.photo_jpeg(4000, 3000, orientation=6, gps=True)
    result = compress(data, CompressOptions())
    image = assert_clean_jpeg(result)
    assert image.size == (1200, 1600)
    assert (result.source_width, result.source_height) == (4000, 3000)
    # Orientation 6 displays the stored image turned 90° clockwise: top-left goes top-right.
    marks = {name for name, pixel in corners(image).items() if is_red(pixel)}
    assert marks == {"top_right"}


@pytest.mark.parametrize(
    ("orientation", "marked_corner"),
    [
        (1, "top_left"),
        (2, "top_right"),
        (3, "bottom_right"),
        (4, "bottom_left"),
        (5, "top_left"),
        (6, "top_right"),
        (7, "bottom_right"),
        (8, "bottom_left"),
    ],
)
def test_every_exif_orientation_is_applied_after_downscaling(orientation, marked_corner):
    data = imagegen.photo_jpeg(800, 600, orientation=orientation)
    image = reopen(compress(data, SMALL))
    assert image.size == ((300, 400) if orientation >= 5 else (400, 300))
    marks = {name for name, pixel in corners(image).items() if is_red(pixel)}
    assert marks == {marked_corner}
    assert_no_metadata(image)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_exif_orientation_is_ignored(orientation):
    image = reopen(compress(imagegen.photo_jpeg(800, 600, orientation=orientation), SMALL))
    assert image.size == (400, 300)
    assert is_red(corners(image)["top_left"])


# --- Metadata -----------------------------------------------------------------------------


def test_comment_icc_profile_and_xmp_are_stripped():
    data = imagegen.photo_jpeg(
        600,
        400,
        gps=True,
        comment=b"secret-comment",
        icc_profile=b"secret-icc" + bytes(200),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>',
    )
    result = compress(data, SMALL)
    assert_clean_jpeg(result)
    assert b"secret" not in result.data


def test_webp_output_has_no_metadata():
    data = imagegen.photo_jpeg(600, 400, orientation=6, gps=True, xmp=b"<x>secret</x>")
    result = compress(data, CompressOptions(max_dimension=400, output_format="webp"))
    assert b"secret" not in result.data
    assert b"EXIF" not in result.data
    assert_no_metadata(reopen(result))


# --- Modes and formats ---------------------------------------------------------------------


def test_png_alpha_is_flattened_on_white_for_jpeg():
    result = compress(imagegen.png_with_alpha(800, 400), SMALL)
    image = assert_clean_jpeg(result)
    assert image.size == (400, 200)
    # The transparent half is black underneath: it must come out white, not black.
    left = ImageStat.Stat(image.crop((0, 0, 180, 200)))
    assert min(left.mean) > 250
    right = ImageStat.Stat(image.crop((220, 0, 400, 200)))
    assert max(right.mean) < 240


def test_png_alpha_is_kept_for_webp():
    result = compress(
        imagegen.png_with_alpha(800, 400), CompressOptions(max_dimension=400, output_format="webp")
    )
    image = reopen(result)
    assert (image.format, image.mode) == ("WEBP", "RGBA")
    assert (result.content_type, result.extension) == ("image/webp", "webp")
    assert image.getpixel((10, 10))[3] == 0
    assert image.getpixel((390, 10))[3] == 255


def test_fully_opaque_alpha_channel_is_dropped_for_webp():
    rgba = imagegen.photo_image(300, 200)
    rgba.putalpha(255)
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    image = reopen(compress(buffer.getvalue(), CompressOptions(output_format="webp")))
    assert image.mode == "RGB"


def test_palette_gif_becomes_rgb_jpeg():
    result = compress(imagegen.palette_gif(800, 600), SMALL)
    assert assert_clean_jpeg(result).size == (400, 300)
    assert result.source_format == "GIF"


def test_gif_transparent_index_is_flattened_on_white():
    image = assert_clean_jpeg(compress(imagegen.palette_gif(800, 400, transparent=True), SMALL))
    assert min(ImageStat.Stat(image.crop((0, 0, 180, 200))).mean) > 250


def test_animated_gif_uses_first_frame():
    image = reopen(compress(imagegen.palette_gif(300, 200, frames=3), SMALL))
    # Later frames are flat single colours; the first one is the photo with its yellow box.
    assert max(ImageStat.Stat(image).stddev) > 20


def test_animated_webp_uses_first_frame():
    image = reopen(compress(imagegen.webp(300, 200, frames=3), SMALL))
    assert max(ImageStat.Stat(image).stddev) > 20


def test_cmyk_jpeg_becomes_rgb():
    result = compress(imagegen.cmyk_jpeg(1200, 900), SMALL)
    image = assert_clean_jpeg(result)
    assert image.size == (400, 300)
    # The ellipse in the photo is blue; a CMYK channel mix-up would turn it another colour.
    # Its RGB (40, 90, 160) went through Pillow's naive RGB -> CMYK; printed as Coated FOGRA39
    # ink those numbers are a muted steel blue, about (71, 95, 129), not the round trip of the
    # naive formula back, which gave about (40, 90, 159).
    red, _, blue = image.getpixel((290, 220))
    assert blue > red + 40


@pytest.mark.parametrize("make", [imagegen.png_16bit, imagegen.tiff_16bit])
def test_16bit_greyscale_is_scaled_to_8bit_not_clipped(make):
    image = assert_clean_jpeg(compress(make(800, 600), SMALL))
    top, middle, bottom = (image.getpixel((200, y))[0] for y in (2, 150, 297))
    assert top < 10
    assert 100 < middle < 156  # clipping would give 255
    assert bottom > 245


def test_webp_input_is_decoded():
    result = compress(imagegen.webp(1200, 600), SMALL)
    assert assert_clean_jpeg(result).size == (400, 200)
    assert result.source_format == "WEBP"


def test_webp_with_alpha_is_flattened_for_jpeg():
    assert_clean_jpeg(compress(imagegen.webp(300, 200, alpha=True), SMALL))


@pytest.mark.parametrize(
    ("mode", "file_format"),
    [
        ("L", "JPEG"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("I", "TIFF"),
        ("RGB", "BMP"),
        ("RGB", "TIFF"),
        ("F", "TIFF"),
        ("CMYK", "TIFF"),
    ],
)
def test_any_source_mode_becomes_rgb(mode, file_format):
    photo = imagegen.photo_image(600, 300)
    buffer = io.BytesIO()
    photo.convert(mode).save(buffer, file_format)
    result = compress(buffer.getvalue(), SMALL)
    image = assert_clean_jpeg(result)
    assert image.size == (400, 200)
    assert result.source_format == file_format
    # Same overall brightness: catches conversions that clip, invert or scale wrongly.
    brightness = ImageStat.Stat(image.convert("L")).mean[0]
    assert brightness == pytest.approx(ImageStat.Stat(photo.convert("L")).mean[0], abs=8)


def test_webp_output_option():
    result = compress(
        imagegen.photo_jpeg(2000, 1000), CompressOptions(max_dimension=500, output_format="webp")
    )
    image = reopen(result)
    assert (image.format, image.mode, image.size) == ("WEBP", "RGB", (500, 250))


def test_lower_quality_gives_smaller_output():
    data = imagegen.photo_jpeg(800, 600)
    low = compress(data, CompressOptions(max_dimension=400, quality=40))
    high = compress(data, CompressOptions(max_dimension=400, quality=95))
    assert len(low.data) < len(high.data) * 0.7


# --- Rejections ---------------------------------------------------------------------------


def test_truncated_jpeg_is_rejected_as_corrupt():
    with pytest.raises(ImageRejected) as caught:
        compress(imagegen.truncated_jpeg(), CompressOptions())
    assert caught.value.reason == "corrupt"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(imagegen.tiny_png()[:40], id="truncated-png"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(100), id="png-signature-then-zeros"),
        pytest.param(b"\xff\xd8\xff" + bytes(100), id="jpeg-magic-then-zeros"),
        pytest.param(b"GIF89a" + bytes(10), id="gif-header-only"),
    ],
)
def test_broken_image_data_is_rejected_as_corrupt(data):
    with pytest.raises(ImageRejected) as caught:
        compress(data, CompressOptions())
    assert caught.value.reason == "corrupt"


@pytest.mark.parametrize("step", ["open", "load"])
def test_any_error_a_decoder_raises_on_the_input_fails_the_image_not_the_job(monkeypatch, step):
    """Pillow's plugins raise whatever a malformed file leads them to; an error escaping as
    unknown would be retried as a fault of the machine and then dead-letter the whole product."""

    def explode(*args, **kwargs):
        raise KeyError("unknown compression 12345")  # as TiffImagePlugin's table lookup does

    if step == "open":
        monkeypatch.setattr(compress_module.Image, "open", explode)
    else:
        monkeypatch.setattr(decode_module, "_load_resized", explode)
    with pytest.raises(ImageRejected) as caught:
        compress(imagegen.tiny_png(), CompressOptions())
    assert caught.value.reason == "corrupt"
    assert "KeyError" in str(caught.value)


def test_running_out_of_memory_is_the_machines_fault_not_the_images(monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(decode_module, "_load_resized", exhausted)
    with pytest.raises(MemoryError):
        compress(imagegen.tiny_png(), CompressOptions())


@pytest.mark.parametrize(
    "pixels",
    [
        pytest.param(60_000_000, id="over-options-limit"),
        # Between Pillow's MAX_IMAGE_PIXELS and twice that, Pillow only warns; the warning
        # must not escape (pytest runs with filterwarnings=error).
        pytest.param(120_000_000, id="pillow-warning-zone"),
        pytest.param(400_000_000, id="pillow-error-zone"),
    ],
)
def test_decompression_bomb_is_rejected_before_decoding(pixels):
    with pytest.raises(ImageRejected) as caught:
        compress(imagegen.bomb_png(pixels), CompressOptions(max_pixels=50_000_000))
    assert caught.value.reason == "decompression_bomb"


def test_max_pixels_option_is_the_limit():
    data = imagegen.photo_jpeg(200, 100, marker=False)
    assert compress(data, CompressOptions(max_pixels=20_000)).width == 200
    with pytest.raises(ImageRejected) as caught:
        compress(data, CompressOptions(max_pixels=19_999))
    assert caught.value.reason == "decompression_bomb"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(imagegen.random_bytes(), id="random"),
        pytest.param(b"", id="empty"),
        pytest.param(b"<!doctype html><html><body>Not found</body></html>", id="html"),
        pytest.param(b'{"error": "nope"}', id="json"),
        pytest.param(b"BM not really a bitmap header", id="bm-text"),
    ],
)
def test_bytes_that_are_no_image_are_rejected_as_not_an_image(data):
    with pytest.raises(ImageRejected) as caught:
        compress(data, CompressOptions())
    assert caught.value.reason == "not_an_image"


def test_heic_is_rejected_as_unsupported():
    heic_head = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    with pytest.raises(ImageRejected) as caught:
        compress(heic_head, CompressOptions())
    assert caught.value.reason == "unsupported"


def test_image_rejected_keeps_reason_and_detail_when_pickled():
    error = pickle.loads(pickle.dumps(ImageRejected("corrupt", "image file is truncated")))
    assert (error.reason, error.detail) == ("corrupt", "image file is truncated")
    assert str(error) == "corrupt: image file is truncated"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_dimension": 0},
        {"quality": 0},
        {"quality": 101},
        {"output_format": "png"},
        {"max_pixels": 0},
    ],
)
def test_invalid_options_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CompressOptions(**kwargs)


# --- Process pool -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    # spawn, not fork: the worker must import everything it needs by name, as in production
    # where forking a process that runs an event loop and threads is not safe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=init_worker, initargs=(1_000_000,)
    ) as executor:
        yield executor


def test_compress_works_in_a_process_pool(pool):
    data = imagegen.photo_jpeg(800, 600, orientation=6)
    result = pool.submit(compress, data, SMALL).result(timeout=60)
    assert isinstance(result, CompressedImage)
    assert (result.width, result.height) == (300, 400)
    assert_clean_jpeg(result)


@pytest.mark.parametrize("name", ["display-p3-jpeg", "cmyk-jpeg-plain-no-profile"])
def test_colour_conversion_works_in_a_process_pool(pool, name):
    # The child imports LittleCMS, builds its own transforms and finds the default CMYK profile.
    source = colour.tagged_sources()[name]
    result = pool.submit(compress, source.data, SMALL).result(timeout=60)
    assert max(colour.patch_errors(assert_clean_jpeg(result), source)) <= 3


def test_rejection_crosses_the_process_boundary_with_its_reason(pool):
    future = pool.submit(compress, imagegen.truncated_jpeg(), SMALL)
    with pytest.raises(ImageRejected) as caught:
        future.result(timeout=60)
    assert caught.value.reason == "corrupt"


def test_pool_worker_ignores_sigint(pool):
    handler = pool.submit(signal.getsignal, signal.SIGINT).result(timeout=60)
    assert handler == signal.SIG_IGN


def test_pool_worker_applies_pillow_pixel_limit_from_initializer(pool):
    # init_worker set Image.MAX_IMAGE_PIXELS to 1 MP; Pillow itself refuses more than twice
    # that, even though these options would allow it.
    data = imagegen.photo_jpeg(2000, 1001, marker=False)
    future = pool.submit(compress, data, CompressOptions(max_pixels=10_000_000))
    with pytest.raises(ImageRejected) as caught:
        future.result(timeout=60)
    assert caught.value.reason == "decompression_bomb"


def test_decoding_every_supported_format_never_loads_all_of_pillows_plugins():
    """Image.init() would import every plugin Pillow has, parsers this service never meant to
    expose to untrusted bytes; a fresh interpreter shows whether any input triggers it."""
    script = """
import io
from PIL import Image
from compressor.compress import CompressOptions, compress
for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buffer, fmt)
    compress(buffer.getvalue(), CompressOptions())
print(Image._initialized)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "1", result.stdout  # 2 would mean Image.init() ran
