"""Recognise image formats from their first bytes.

The downloader calls this on the first chunk of a response so it can drop a non-image before
buffering the rest, whatever the server's Content-Type says. Names match Pillow's format
names (``Image.format``) where Pillow has one.
"""

from __future__ import annotations

SNIFF_BYTES = 64
"""Bytes to pass for a reliable answer. Fewer (a short first chunk) can only give None for
formats whose signature is longer; pass the whole body if it is shorter than this."""

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
# Sizes of the BITMAPINFOHEADER family. "BM" alone is two printable bytes, far too likely at the
# start of some text file, so the header size is checked as well.
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# Generic HEIF brands: the file is AVIF or HEIC depending on the compatible brands.
_HEIF_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})


def sniff_image_type(head: bytes) -> str | None:
    """Return the image format that ``head`` starts with, or None.

    Recognises ``JPEG``, ``PNG``, ``GIF``, ``WEBP``, ``BMP``, ``TIFF``, ``AVIF`` and ``HEIC``.
    ``head`` should hold at least :data:`SNIFF_BYTES` bytes (or the whole body).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(_TIFF):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
            return "BMP"
        return None
    return _sniff_isobmff(head)


def _sniff_isobmff(head: bytes) -> str | None:
    # ISO base media file: a leading "ftyp" box holds the major brand and then a list of
    # compatible brands, 4 bytes each, up to the box's declared size.
    if head[4:8] != b"ftyp" or len(head) < 12:
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    compatible = [head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)]
    if major in _AVIF_BRANDS:
        return "AVIF"
    if major in _HEIC_BRANDS:
        return "HEIC"
    if major in _HEIF_GENERIC_BRANDS:
        if any(brand in _AVIF_BRANDS for brand in compatible):
            return "AVIF"
        if any(brand in _HEIC_BRANDS for brand in compatible):
            return "HEIC"
    return None
