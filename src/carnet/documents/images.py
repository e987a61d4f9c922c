"""PNG images a patient uploads, kept as a one-page PDF.

A DMP document's format code follows its media type, and JDV_J60-FormatCode-DMP has codes for PDF,
JPEG, TIFF, text and RTF only (ASS_A12; reference/dmp.md §2.5): a PNG as such could not be shared.
Mon espace santé's own application takes PNG files, and patients have many (screenshots, scans
from a phone), so Carnet keeps the image's pixels exactly in a PDF page: Pillow decodes the PNG
(palette, transparency, 16-bit, interlacing), the pixels are flattened onto white and re-encoded as
PNG-filtered rows, which PDF's Flate decoder with the PNG predictors reads as they are (no loss, about
the PNG's size).

A file that only looks like a PNG, or whose pixels would not fit in memory (a "decompression bomb":
a small file announcing an enormous image), is refused before anything is decoded.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from carnet.pdf import image_page

MAX_PIXELS = 40_000_000  # 40 megapixels: more than any phone photo or page scan a patient sends


class ImageError(ValueError):
    """The bytes are not a PNG image Carnet can keep (the message says why, for the patient)."""


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT chunks (one zlib stream of filtered rows) of a PNG Pillow wrote."""
    position, data = 8, bytearray()
    while position + 8 <= len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return bytes(data)


def png_as_pdf(data: bytes, *, max_pixels: int = MAX_PIXELS) -> bytes:
    """A one-page PDF showing the PNG ``data`` with its exact pixels, or ``ImageError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(f"the image is too large ({width} × {height} pixels; at most {max_pixels})")
                image.load()
                flat = _flatten(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large (at most {max_pixels} pixels)") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("the file is not a readable PNG image") from exc
    except (OSError, SyntaxError, ValueError, struct.error) as exc:  # truncated or corrupt data
        raise ImageError("the PNG image is damaged and cannot be read") from exc
    encoded = io.BytesIO()
    flat.save(encoded, format="PNG", optimize=False, compress_level=9)
    return image_page(width, height, gray=flat.mode == "L", flate_png_rows=_idat(encoded.getvalue()))


def _flatten(image: Image.Image) -> Image.Image:
    """8-bit grey or RGB pixels, transparency composited over white (as a viewer shows it)."""
    if image.mode.startswith("I"):  # 16-bit grey: keep the top 8 bits (a plain conversion would clip)
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("1", "L") and "transparency" not in image.info:
        return image.convert("L")
    if image.mode in ("LA", "RGBA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")
