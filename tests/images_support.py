"""Reading back the image of a one-page PDF that Carnet made from a PNG (``documents.images``)."""

from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import Image


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def shown_image(pdf: bytes) -> Image.Image:
    """The image of the PDF's page, decoded as a viewer does: the Flate stream of PNG-predicted rows
    under the dictionary's /Width, /Height and /ColorSpace (rebuilt into a PNG for Pillow to undo the
    predictors)."""
    dictionary = re.search(rb"/Subtype /Image (.*?) /Length (\d+) >>\nstream\n", pdf, re.S)
    assert dictionary is not None
    entries, length = dictionary.group(1), int(dictionary.group(2))
    start = dictionary.end()
    data = pdf[start : start + length]
    assert pdf[start + length : start + length + 10] == b"\nendstream"
    width = int(re.search(rb"/Width (\d+)", entries).group(1))  # type: ignore[union-attr]
    height = int(re.search(rb"/Height (\d+)", entries).group(1))  # type: ignore[union-attr]
    gray = b"/DeviceGray" in entries
    assert b"/Predictor 15" in entries
    assert f"/Columns {width}".encode() in entries
    colour_type = 0 if gray else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    rebuilt = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    image = Image.open(io.BytesIO(rebuilt))
    image.load()
    return image
