"""Writing small PDF 1.4 files without a dependency: a page of text (the demo documents) or a page
holding one image (a PNG a patient uploads, kept losslessly: ``documents.images``).

Only what those two need: numbered objects, a cross-reference table and a trailer.
"""

from __future__ import annotations

A4 = (595, 842)  # points
MARGIN = 28


def assemble(objects: list[bytes]) -> bytes:
    """A PDF whose object 1 is the catalogue; ``objects[i]`` becomes object ``i + 1``."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stream(dictionary: bytes, data: bytes) -> bytes:
    """A stream object: ``dictionary`` holds the entries other than /Length."""
    head = b"<< " + (dictionary + b" " if dictionary else b"") + b"/Length " + str(len(data)).encode() + b" >>"
    return head + b"\nstream\n" + data + b"\nendstream"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_page(title: str, lines: list[str]) -> bytes:
    """An A4 page showing ``title`` and ``lines`` (Latin-1 text, Helvetica)."""
    text_ops = ["BT", "/F1 16 Tf", "56 780 Td", f"({_escape(title)}) Tj", "/F1 11 Tf", "0 -28 Td"]
    for line in lines:
        text_ops += [f"({_escape(line)}) Tj", "0 -16 Td"]
    text_ops.append("ET")
    content = "\n".join(text_ops).encode("latin-1", errors="replace")
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            stream(b"", content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        ]
    )


def image_page(width: int, height: int, *, gray: bool, flate_png_rows: bytes) -> bytes:
    """An A4 page (portrait or landscape, as the image) showing one image, scaled down to fit.

    ``flate_png_rows`` is a zlib stream of PNG-filtered rows (8 bits per component, RGB or grey),
    which PDF decodes itself with the PNG predictors: the pixels are kept exactly.
    """
    page_w, page_h = A4 if height >= width else (A4[1], A4[0])
    scale = min((page_w - 2 * MARGIN) / width, (page_h - 2 * MARGIN) / height, 1.0)
    shown_w, shown_h = width * scale, height * scale
    x, y = (page_w - shown_w) / 2, (page_h - shown_h) / 2
    colours = 1 if gray else 3
    image = stream(
        f"/Type /XObject /Subtype /Image /Width {width} /Height {height} "
        f"/ColorSpace /{'DeviceGray' if gray else 'DeviceRGB'} /BitsPerComponent 8 /Filter /FlateDecode "
        f"/DecodeParms << /Predictor 15 /Colors {colours} /BitsPerComponent 8 /Columns {width} >>".encode(),
        flate_png_rows,
    )
    content = f"q {shown_w:.2f} 0 0 {shown_h:.2f} {x:.2f} {y:.2f} cm /Im1 Do Q".encode()
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_w} {page_h}] /Contents 4 0 R "
            "/Resources << /XObject << /Im1 5 0 R >> >> >>".encode(),
            stream(b"", content),
            image,
        ]
    )
