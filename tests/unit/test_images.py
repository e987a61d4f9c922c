"""PNG uploads kept as a one-page PDF (``documents.images``, ``carnet.pdf``): the PDF is well formed, and
its image stream, read back the way a PDF viewer reads it, holds exactly the pixels the PNG shows."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from carnet.documents.images import ImageError, png_as_pdf
from carnet.pdf import assemble
from tests.images_support import chunk as _chunk
from tests.images_support import shown_image as _shown


def _png(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


def _noise(mode: str, size: tuple[int, int], seed: int = 7) -> Image.Image:
    rng = random.Random(seed)
    channels = len(mode)
    raw = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * channels))
    return Image.frombytes(mode, size, raw)


def _xref_is_exact(pdf: bytes) -> None:
    """Every cross-reference entry points at its object, and startxref at the table."""
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[start : start + 4] == b"xref"
    lines = pdf[start:].split(b"\n")
    count = int(lines[1].split()[1])
    for number in range(1, count):
        offset = int(lines[2 + number].split()[0])
        assert pdf[offset:].startswith(f"{number} 0 obj\n".encode()), number


def test_an_rgb_png_keeps_every_pixel() -> None:
    image = _noise("RGB", (123, 77))
    pdf = png_as_pdf(_png(image))
    assert pdf.startswith(b"%PDF-1.4")
    assert pdf.endswith(b"%%EOF\n")
    _xref_is_exact(pdf)
    shown = _shown(pdf)
    assert shown.mode == "RGB"
    assert shown.size == (123, 77)
    assert shown.tobytes() == image.tobytes()
    # Landscape: an A4 landscape page; the PDF is about the size of the PNG, not of the raw pixels.
    assert b"/MediaBox [0 0 842 595]" in pdf
    assert len(pdf) < len(image.tobytes()) * 1.2


def test_grey_palette_and_interlaced_pngs_keep_their_pixels() -> None:
    grey = _noise("L", (40, 90))
    shown = _shown(png_as_pdf(_png(grey)))
    assert shown.mode == "L"
    assert shown.tobytes() == grey.tobytes()
    palette = _noise("RGB", (30, 30)).quantize(16)
    assert _shown(png_as_pdf(_png(palette))).tobytes() == palette.convert("RGB").tobytes()
    interlaced = _noise("RGB", (33, 21), seed=3)
    assert _shown(png_as_pdf(_png(interlaced, interlace=1))).tobytes() == interlaced.tobytes()
    # 16-bit grey keeps its top 8 bits (a plain conversion would clip everything above 255 to white).
    deep = Image.new("I;16", (4, 4), 0x8040)
    assert set(_shown(png_as_pdf(_png(deep))).tobytes()) == {0x80}


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (10, 20), (200, 0, 0, 255))
    for x in range(5):
        for y in range(20):
            image.putpixel((x, y), (0, 0, 255, 0))  # fully transparent: shown as white
    shown = _shown(png_as_pdf(_png(image)))
    assert shown.getpixel((0, 0)) == (255, 255, 255)
    assert shown.getpixel((9, 19)) == (200, 0, 0)
    assert b"/MediaBox [0 0 595 842]" in png_as_pdf(_png(image))  # portrait


def test_what_is_not_a_readable_png_is_refused() -> None:
    good = _png(_noise("RGB", (64, 64)))
    with pytest.raises(ImageError, match="damaged"):
        png_as_pdf(good[: len(good) // 2])
    with pytest.raises(ImageError, match="not a readable PNG"):
        png_as_pdf(b"%PDF-1.4 not an image")
    with pytest.raises(ImageError, match="not a readable PNG"):
        png_as_pdf(_jpeg())


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="JPEG")
    return out.getvalue()


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    # A few hundred bytes announcing 100 000 × 100 000 pixels: refused from the header alone.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
    bomb += _chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="too large"):
        png_as_pdf(bomb)
    header = struct.pack(">IIBBBBB", 8_000, 6_000, 8, 2, 0, 0, 0)  # 48 Mpx: under Pillow's own limit, over ours
    big = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
    with pytest.raises(ImageError, match="too large"):
        png_as_pdf(big + _chunk(b"IEND", b""))
    with pytest.raises(ImageError, match="too large"):
        png_as_pdf(_png(Image.new("L", (200, 200))), max_pixels=10_000)


def test_assemble_numbers_objects_and_indexes_them() -> None:
    pdf = assemble([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    _xref_is_exact(pdf)
    assert b"trailer\n<< /Size 3 /Root 1 0 R >>" in pdf
