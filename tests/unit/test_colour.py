"""Colour: every output means sRGB. Measured as colour (ΔE2000 per patch), not as a mode.

Each tagged source (testkit.colour) is a grid of flat patches in its own colour space; the
reference is LittleCMS's relative colorimetric conversion of the same patches to sRGB. Before
the worker converted anything, the P3, Adobe RGB, ProPhoto, CMYK and grey sources all failed the
ΔE2000 <= 3 test below (their numbers were shown as if they were sRGB, or, for CMYK, run through
a naive formula).
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageCms, features

from compressor import colour as colour_module
from compressor.compress import CompressedImage, CompressOptions, compress
from testkit import colour as tc

ROOT = Path(__file__).resolve().parents[2]

MAX_DELTA_E = 3.0
"""Barely noticeable side by side; the JPEG encoding alone adds up to about 1 on flat patches."""

# Half the 768-pixel-wide sources: JPEGs take the DCT-domain draft path, as real photos do.
OPTIONS = CompressOptions(max_dimension=384)

SOURCES = tc.tagged_sources()


def reopen(result: CompressedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def describe(errors: list[float]) -> str:
    worst = max(range(len(errors)), key=errors.__getitem__)
    return f"worst patch {worst}: ΔE2000 {errors[worst]:.2f}; all: " + " ".join(
        f"{e:.1f}" for e in errors
    )


# --- ΔE2000 and the test profiles themselves -------------------------------------------------

# Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Color Res. Appl. 30 (2005), table 1.
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA_PAIRS)
def test_delta_e_2000_matches_the_published_pairs(lab1, lab2, expected):
    assert tc.delta_e_2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert tc.delta_e_2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
    ],
)
def test_srgb_to_lab(rgb, lab):
    assert tc.srgb_to_lab(rgb) == pytest.approx(lab, abs=0.05)


def test_written_profiles_are_the_spaces_they_claim():
    # The matrix of IEC 61966-2-1 comes out of sRGB's primaries and white.
    matrix = [v for row in tc.SRGB.to_xyz() for v in row]
    iec = [0.4124, 0.3576, 0.1805, 0.2126, 0.7152, 0.0722, 0.0193, 0.1192, 0.9505]
    assert matrix == pytest.approx(iec, abs=2e-4)
    # A profile written for sRGB converts like LittleCMS's own sRGB, so the writer (colorants,
    # Bradford adaptation, tone curves) is right, and so are the P3, Adobe RGB and ProPhoto ones.
    written = tc.reference_srgb("RGB", tc.RGB_PATCHES, tc.rgb_profile(tc.SRGB))
    for got, want in zip(written, tc.RGB_PATCHES, strict=True):
        assert got == pytest.approx(want, abs=1)
    # Display P3's red is beyond sRGB's: it clips to sRGB red; its white stays white.
    p3 = tc.reference_srgb("RGB", [(255, 0, 0), (255, 255, 255)], tc.rgb_profile(tc.DISPLAY_P3))
    assert p3 == ((255, 0, 0), (255, 255, 255))


def test_the_made_up_press_is_not_fogra39():
    # Otherwise the CMYK-with-profile sources could not tell an embedded profile from the default.
    ours = tc.reference_srgb("CMYK", tc.CMYK_PATCHES, tc.cmyk_profile())
    fogra = tc.reference_srgb("CMYK", tc.CMYK_PATCHES, tc.default_cmyk_profile())
    errors = [
        tc.delta_e_2000(tc.srgb_to_lab(a), tc.srgb_to_lab(b))
        for a, b in zip(ours, fogra, strict=True)
    ]
    assert max(errors) > 10


def test_pillow_is_built_with_littlecms_and_the_install_guard_checks_it():
    assert features.check("littlecms2")
    guard = subprocess.run(
        [sys.executable, "scripts/check_pillow_simd.py"], capture_output=True, text=True, cwd=ROOT
    )
    assert guard.returncode == 0, guard.stderr
    assert '"littlecms2"' in (ROOT / "scripts/check_pillow_simd.py").read_text()


# --- Tagged sources --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SOURCES))
def test_tagged_source_comes_out_as_the_same_colours_in_srgb(name):
    source = SOURCES[name]
    webp = source.name.endswith("alpha")  # keeps its alpha
    options = CompressOptions(max_dimension=384, output_format="webp" if webp else "jpeg")
    result = compress(source.data, options)
    image = reopen(result)
    assert image.size == (384, round(384 * source.size[1] / source.size[0]))
    assert "icc_profile" not in image.info  # untagged: sRGB by definition
    errors = tc.patch_errors(image, source)
    assert max(errors) <= MAX_DELTA_E, describe(errors)


def test_alpha_survives_the_conversion():
    image = reopen(
        compress(SOURCES["display-p3-png-alpha"].data, CompressOptions(output_format="webp"))
    )
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert image.getpixel((100, 100))[3] == 255  # type: ignore[index]


def test_embedded_cmyk_profile_wins_over_the_default():
    source = SOURCES["cmyk-jpeg-adobe-with-profile"]
    as_default = tc.PatchSource(
        "as if untagged",
        source.data,
        tc.reference_srgb("CMYK", tc.CMYK_PATCHES, tc.default_cmyk_profile()),
        "CMYK",
    )
    assert max(tc.patch_errors(reopen(compress(source.data, OPTIONS)), as_default)) > 10


def test_adobe_and_plain_cmyk_jpegs_come_out_alike():
    adobe = compress(SOURCES["cmyk-jpeg-adobe-no-profile"].data, OPTIONS)
    plain = compress(SOURCES["cmyk-jpeg-plain-no-profile"].data, OPTIONS)
    errors = tc.patch_errors(reopen(plain), SOURCES["cmyk-jpeg-adobe-no-profile"])
    assert max(errors) <= MAX_DELTA_E
    assert reopen(adobe).getpixel((10, 10)) == pytest.approx(
        reopen(plain).getpixel((10, 10)), abs=3
    )


# --- Untagged and sRGB-tagged sources cost nothing --------------------------------------------


def srgb_profiles() -> list[bytes]:
    return [
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        tc.rgb_profile(tc.SRGB),
    ]


def test_untagged_rgb_keeps_its_numbers():
    reference = tuple((float(r), float(g), float(b)) for r, g, b in tc.RGB_PATCHES)
    source = tc.PatchSource("untagged", tc.untagged_jpeg(), reference, "RGB")
    errors = tc.patch_errors(reopen(compress(source.data, OPTIONS)), source)
    assert max(errors) <= MAX_DELTA_E, describe(errors)


@pytest.mark.parametrize("index", [0, 1])
def test_srgb_tagged_source_is_left_as_it_is(index, monkeypatch):
    """A profile that converts like sRGB is remembered as nothing to do: no per-pixel work, and
    exactly the output of the untagged file."""
    colour_module._cache.clear()
    untagged = compress(tc.untagged_jpeg(), OPTIONS)
    tagged_data = tc.untagged_jpeg(icc_profile=srgb_profiles()[index])
    compress(tagged_data, OPTIONS)  # builds and probes the transform

    def no_per_pixel_work(*args, **kwargs):
        raise AssertionError("an sRGB profile was applied")

    monkeypatch.setattr(ImageCms.ImageCmsTransform, "apply", no_per_pixel_work)
    assert compress(tagged_data, OPTIONS).data == untagged.data


def test_transforms_are_built_once_per_profile_and_mode(monkeypatch):
    colour_module._cache.clear()
    built = []
    real_build = ImageCms.buildTransform

    def counting_build(*args, **kwargs):
        built.append(args[2:4])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(ImageCms, "buildTransform", counting_build)
    p3 = SOURCES["display-p3-jpeg"].data
    for data in (p3, bytes(p3), SOURCES["adobe-rgb-jpeg"].data, p3):
        compress(data, OPTIONS)
    compress(SOURCES["display-p3-png-alpha"].data, CompressOptions(output_format="webp"))
    assert built == [("RGB", "RGB"), ("RGB", "RGB"), ("RGBA", "RGBA")]


def test_transform_cache_is_bounded():
    colour_module._cache.clear()
    image = Image.new("RGB", (4, 4), (200, 30, 40))
    for i in range(colour_module._CACHE_SIZE + 8):
        space = tc.RgbSpace(f"P3 {i}", tc.DISPLAY_P3.primaries, tc.DISPLAY_P3.white, None)
        colour_module.to_srgb(image, tc.rgb_profile(space))
    assert len(colour_module._cache) == colour_module._CACHE_SIZE


# --- Bad profiles: converted as if untagged, with a warning ----------------------------------


def truncated_profile() -> bytes:
    return tc.rgb_profile(tc.DISPLAY_P3)[:200]


def rgb_profile_without_colorants() -> bytes:
    # The header of a P3 profile with an empty tag table: readable, but no transform to build.
    rest = tc.rgb_profile(tc.DISPLAY_P3)[4:128] + bytes(4)
    return (4 + len(rest)).to_bytes(4, "big") + rest


BAD_RGB_PROFILES = {
    "garbage": b"not a profile" + bytes(300),
    "truncated": truncated_profile(),
    "no-colorants": rgb_profile_without_colorants(),
    "cmyk-profile": tc.cmyk_profile(),
    "grey-profile": tc.grey_profile(1.0),
    "lab-abstract-profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
}


def ignored_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "image.icc_profile_ignored"]


@pytest.mark.parametrize("name", list(BAD_RGB_PROFILES))
def test_bad_profile_on_rgb_is_ignored_with_a_warning(name, caplog):
    caplog.set_level(logging.WARNING, logger="compressor")
    tagged = compress(tc.untagged_jpeg(icc_profile=BAD_RGB_PROFILES[name]), OPTIONS)
    assert tagged.data == compress(tc.untagged_jpeg(), OPTIONS).data
    (record,) = ignored_warnings(caplog)
    assert record.levelno == logging.WARNING
    assert record.mode == "RGB"  # type: ignore[attr-defined]
    assert record.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "profile", [tc.rgb_profile(tc.DISPLAY_P3), b"garbage" * 40], ids=["rgb-profile", "garbage"]
)
def test_bad_profile_on_cmyk_means_the_default_cmyk_profile(profile, caplog):
    caplog.set_level(logging.WARNING, logger="compressor")
    image = tc.patches("CMYK", tc.CMYK_PATCHES)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, icc_profile=profile)
    result = compress(buffer.getvalue(), OPTIONS)
    assert result.data == compress(SOURCES["cmyk-jpeg-adobe-no-profile"].data, OPTIONS).data
    assert len(ignored_warnings(caplog)) == 1


def test_rgb_profile_on_grey_is_ignored_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="compressor")
    grey = tc.patches("L", tc.GREY_PATCHES)
    untagged, tagged = io.BytesIO(), io.BytesIO()
    grey.save(untagged, "JPEG", quality=95)
    grey.save(tagged, "JPEG", quality=95, icc_profile=tc.rgb_profile(tc.DISPLAY_P3))
    assert compress(tagged.getvalue(), OPTIONS).data == compress(untagged.getvalue(), OPTIONS).data
    assert len(ignored_warnings(caplog)) == 1
