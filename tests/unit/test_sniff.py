"""compressor.sniff: image formats from their first bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from compressor.sniff import SNIFF_BYTES, sniff_image_type
from testkit import imagegen


def encoded(file_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "orange").save(buffer, file_format, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(imagegen.photo_jpeg(16, 16), "JPEG", id="jpeg"),
        pytest.param(imagegen.cmyk_jpeg(16, 16), "JPEG", id="cmyk-jpeg"),
        pytest.param(imagegen.tiny_png(), "PNG", id="png"),
        pytest.param(imagegen.palette_gif(16, 16), "GIF", id="gif89a"),
        pytest.param(b"GIF87a" + bytes(26), "GIF", id="gif87a"),
        pytest.param(imagegen.webp(16, 16), "WEBP", id="webp"),
        pytest.param(encoded("BMP"), "BMP", id="bmp"),
        pytest.param(encoded("TIFF"), "TIFF", id="tiff-little-endian"),
        pytest.param(b"MM\x00*\x00\x00\x00\x08" + bytes(24), "TIFF", id="tiff-big-endian"),
        pytest.param(b"II+\x00\x08\x00\x00\x00" + bytes(24), "TIFF", id="bigtiff"),
        pytest.param(imagegen.truncated_jpeg(), "JPEG", id="truncated-jpeg"),
        pytest.param(imagegen.bomb_png(1_000_000), "PNG", id="bomb-png"),
    ],
)
def test_recognises_image_formats_from_their_head(data, expected):
    assert sniff_image_type(data[:SNIFF_BYTES]) == expected


def test_whole_small_file_can_be_passed():
    assert sniff_image_type(imagegen.tiny_png()) == "PNG"


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (4 + len(body)).to_bytes(4, "big") + body + b"\x00\x00\x00\x08meta"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(ftyp(b"heic", b"mif1", b"heic"), "HEIC", id="iphone-heic"),
        pytest.param(ftyp(b"heix", b"mif1"), "HEIC", id="heix"),
        pytest.param(ftyp(b"mif1", b"mif1", b"heic"), "HEIC", id="mif1-compatible-heic"),
        pytest.param(ftyp(b"avif", b"mif1", b"miaf"), "AVIF", id="avif"),
        pytest.param(ftyp(b"avis", b"avif"), "AVIF", id="avif-sequence"),
        pytest.param(ftyp(b"mif1", b"mif1", b"miaf", b"avif"), "AVIF", id="mif1-compatible-avif"),
        pytest.param(ftyp(b"isom", b"isom", b"mp41"), None, id="mp4-video"),
        pytest.param(ftyp(b"qt  "), None, id="quicktime"),
        pytest.param(ftyp(b"mif1", b"mif1"), None, id="heif-of-unknown-codec"),
    ],
)
def test_recognises_heif_family_by_brand(head, expected):
    assert sniff_image_type(head[:SNIFF_BYTES]) == expected


def test_compatible_brand_after_the_ftyp_box_is_not_read():
    # "avif" sits in the next box, not among the compatible brands.
    head = ftyp(b"mif1", b"mif1") + b"avif"
    assert sniff_image_type(head) is None


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xd8", id="two-bytes-of-jpeg"),
        pytest.param(b"\x89PNG\r\n", id="short-png-signature"),
        pytest.param(b"GIF88a" + bytes(10), id="gif-unknown-version"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", id="riff-wave-audio"),
        pytest.param(b"RIFF\x24\x00\x00\x00WEB", id="riff-cut-before-fourcc"),
        pytest.param(b"BM", id="bm-only"),
        pytest.param(b"BMW 320i for sale, low mileage", id="text-starting-with-BM"),
        pytest.param(b"II*", id="short-tiff"),
        pytest.param(b"<!DOCTYPE html><html>", id="html"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'>", id="svg"),
        pytest.param(b"%PDF-1.7\n", id="pdf"),
        pytest.param(b"PK\x03\x04" + bytes(28), id="zip"),
        pytest.param(b'{"image": "jpeg"}', id="json"),
        pytest.param(b"\x00\x00\x00\x0cjP  \r\n\x87\n", id="jpeg2000"),
        pytest.param(b"\x00\x00\x01\x00\x01\x00\x10\x10", id="ico"),
        pytest.param(b"\x00\x00\x00\x18fty", id="cut-inside-ftyp"),
    ],
)
def test_returns_none_for_everything_else(head):
    assert sniff_image_type(head) is None


@pytest.mark.parametrize("dib_size", [12, 40, 56, 108, 124])
def test_bmp_needs_a_known_dib_header_size(dib_size):
    head = b"BM" + bytes(12) + dib_size.to_bytes(4, "little") + bytes(14)
    assert sniff_image_type(head) == "BMP"
