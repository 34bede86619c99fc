"""Hostile uploads: a seeded generator of ~330 upload cases and a per-case time/memory probe.

Shared by ``tests/test_fuzz_images.py`` (correctness: a tensor or an ImageInputError, never
anything else) and ``benchmarks/bench_uploads.py`` (the per-case time and peak memory, with
targets). The cases: random bytes (bare and behind real magic numbers), valid images in every format
and colour mode an upload may use, each truncated and bit-flipped at random places, decompression
bombs (huge dimensions declared in a tiny file), compressible images just under the pixel limit,
tiny and extreme-aspect images, oversized metadata chunks, animations and all eight EXIF
orientations.
"""

from __future__ import annotations

import faulthandler
import io
import random
import resource
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fxcore.upload.faces import MAX_PIXELS

SEED = 20261127
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Hang guard, not a speed limit: ~25x the slowest case on a slow 2-core machine (~5 s).
HANG_S = 120
SIZE = 64  # every case is prepared at this model input size, ImageNet-normalised


@dataclass
class Case:
    group: str
    name: str
    data: bytes
    expect: str = "any"  # any | ok | reject
    reference: Image.Image | None = None  # the upright RGB image a correct decode must give
    tolerance: float = 0.0  # lossy formats: max mean |difference| of the normalised tensors


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w: int = 96, h: int = 80, seed: int = 0) -> Image.Image:
    """An asymmetric test picture (gradients, a disc, noise) so rotations and crops show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx * yy) % 256], -1)
    arr = (arr + rng.integers(0, 20, arr.shape)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    ImageDraw.Draw(img).ellipse([w // 5, h // 6, w // 2, h // 2], fill=(250, 30, 30))
    return img


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 256))
        + png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0xF0, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b"\x3b"


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is patched to claim ``width`` x ``height``."""
    raw = bytearray(encode(photo(16, 16), "JPEG", quality=80))
    i = raw.index(b"\xff\xc0")
    raw[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def webp_claiming(width: int, height: int) -> bytes:
    """A WebP VP8X header declaring a ``width`` x ``height`` canvas (max 16384 per side)."""
    vp8x = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_claiming(width: int, height: int) -> bytes:
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, min(width * height, 2**32 - 1)),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, typ, n, val) for tag, typ, n, val in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + b"\x00" * 64


def with_exif_orientation(img: Image.Image, orientation: int, fmt: str, **kw: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif, **kw)


# The stored pixels for EXIF orientation k: the inverse of what exif_transpose applies.
_STORE = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def valid_images() -> list[Case]:
    """Valid uploads in each format and mode, with the RGB picture a correct decode gives."""
    rgb = photo()
    gray = rgb.convert("L")
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    white = Image.new("RGBA", rgb.size, (255, 255, 255, 255))
    on_white = Image.alpha_composite(white, rgba).convert("RGB")
    la = gray.copy().convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(rgb.size))
    la_white = Image.alpha_composite(white, la.convert("RGBA")).convert("RGB")
    pal = rgb.quantize(64)
    i16 = Image.fromarray((np.asarray(gray, np.uint16) * 257).astype(np.uint16))
    cmyk = rgb.convert("CMYK")
    frames = [photo(seed=s) for s in range(3)]
    anim_gif = io.BytesIO()
    frames[0].save(anim_gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    anim_webp = io.BytesIO()
    frames[0].save(anim_webp, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    g = rgb.convert("RGB")
    cases = [
        Case("valid", "png-rgb", encode(rgb, "PNG"), "ok", rgb),
        Case("valid", "png-rgba", encode(rgba, "PNG"), "ok", on_white),
        Case("valid", "png-l", encode(gray, "PNG"), "ok", gray.convert("RGB")),
        Case("valid", "png-la", encode(la, "PNG"), "ok", la_white),
        Case("valid", "png-palette", encode(pal, "PNG"), "ok", pal.convert("RGB")),
        Case("valid", "png-i16", encode(i16, "PNG"), "ok", gray.convert("RGB")),
        Case(
            "valid",
            "png-1bit",
            encode(gray.convert("1"), "PNG"),
            "ok",
            gray.convert("1").convert("RGB"),
        ),
        Case("valid", "jpeg-rgb", encode(rgb, "JPEG", quality=95), "ok", rgb, 0.35),
        Case(
            "valid",
            "jpeg-progressive",
            encode(rgb, "JPEG", quality=95, progressive=True),
            "ok",
            rgb,
            0.35,
        ),
        Case("valid", "jpeg-l", encode(gray, "JPEG", quality=95), "ok", gray.convert("RGB"), 0.35),
        Case(
            "valid", "jpeg-cmyk", encode(cmyk, "JPEG", quality=95), "ok", cmyk.convert("RGB"), 0.35
        ),
        Case("valid", "webp-lossless", encode(rgb, "WEBP", lossless=True), "ok", rgb),
        Case("valid", "webp-lossy", encode(rgb, "WEBP", quality=95), "ok", rgb, 0.5),
        Case("valid", "webp-rgba", encode(rgba, "WEBP", lossless=True), "ok", on_white),
        Case("valid", "gif-palette", encode(pal, "GIF"), "ok", pal.convert("RGB")),
        Case(
            "valid",
            "gif-animated",
            anim_gif.getvalue(),
            "ok",
            Image.open(io.BytesIO(anim_gif.getvalue())).convert("RGB"),
        ),
        Case("valid", "webp-animated", anim_webp.getvalue(), "ok", frames[0]),
        Case("valid", "bmp-rgb", encode(g, "BMP"), "ok", g),
        Case("valid", "tiff-rgb", encode(g, "TIFF"), "ok", g),
        Case("valid", "tiff-i16", encode(i16, "TIFF"), "ok", gray.convert("RGB")),
        Case("valid", "tiff-cmyk", encode(cmyk, "TIFF"), "ok", cmyk.convert("RGB")),
        Case("valid", "ppm-rgb", encode(g, "PPM"), "ok", g),
    ]
    return cases


def exif_cases() -> list[Case]:
    """All eight orientations; the decode must come out upright (lossless: exactly)."""
    upright = photo(90, 60, seed=7)
    cases = []
    for k, ops in _STORE.items():
        stored = upright
        for op in ops:
            stored = stored.transpose(op)
        cases.append(
            Case(
                "exif",
                f"png-orientation-{k}",
                with_exif_orientation(stored, k, "PNG"),
                "ok",
                upright,
            )
        )
        cases.append(
            Case(
                "exif",
                f"jpeg-orientation-{k}",
                with_exif_orientation(stored, k, "JPEG", quality=95),
                "ok",
                upright,
                0.35,
            )
        )
    return cases


def mutations(base: list[Case], rng: random.Random) -> list[Case]:
    """Each valid file truncated at 5 places and bit-flipped 6 ways (header and body)."""
    out = []
    for c in base:
        n = len(c.data)
        for cut in sorted({1, 8, rng.randrange(2, 64), rng.randrange(n // 4, n), n - 1}):
            out.append(Case("truncated", f"{c.name}[:{cut}]", c.data[:cut]))
        for j in range(6):
            raw = bytearray(c.data)
            region = min(n, 96) if j < 3 else n  # half in the header, half anywhere
            flips = 1 if j % 3 == 0 else rng.randint(2, 24)
            for _ in range(flips):
                i = rng.randrange(region)
                raw[i] ^= 1 << rng.randrange(8)
            out.append(Case("bit-flipped", f"{c.name}~{j}x{flips}", bytes(raw)))
    return out


def random_bytes(rng: random.Random) -> list[Case]:
    magics = [
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"BM",
        b"II*\x00",
        b"MM\x00*",
        b"P6\n",
        b"\x00\x00\x00\x1cftypavif",
    ]
    cases = [Case("random", "empty", b"", "reject")]
    for i in range(20):
        size = rng.choice([1, 7, 64, 512, 4096, 65536])
        cases.append(Case("random", f"bytes-{size}-{i}", rng.randbytes(size), "reject"))
    for m in magics:
        for size in (16, 700, 20000):
            cases.append(Case("random", f"{m[:4]!r}+{size}", m + rng.randbytes(size)))
    return cases


def bombs() -> list[Case]:
    """Huge dimensions declared in a tiny file: refused from the header, before decoding."""
    cases = [
        Case("bomb", "png-65535x65535", png_claiming(65535, 65535), "reject"),
        Case("bomb", "png-2^31-1 wide", png_claiming(2**31 - 1, 1 << 16), "reject"),
        Case("bomb", "png-16bit-50000x50000", png_claiming(50000, 50000, 16, 0), "reject"),
        Case("bomb", "png-just-over-limit", png_claiming(MAX_PIXELS // 1000 + 1, 1000), "reject"),
        Case("bomb", "gif-65535x65535", gif_claiming(65535, 65535), "reject"),
        Case("bomb", "bmp-60000x60000", bmp_claiming(60000, 60000), "reject"),
        Case("bomb", "bmp-top-down-huge", bmp_claiming(60000, -60000), "reject"),
        Case("bomb", "jpeg-65500x65500", jpeg_claiming(65500, 65500), "reject"),
        Case("bomb", "webp-16384x16384", webp_claiming(16384, 16384), "reject"),
        Case("bomb", "tiff-100000x100000", tiff_claiming(100000, 100000), "reject"),
    ]
    # A 1 MB zTXt chunk that inflates to 64 MB of text, in an otherwise valid PNG.
    raw = encode(photo(), "PNG")
    text = png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9))
    cases.append(Case("bomb", "png-ztxt-64MB", raw[:33] + text + raw[33:]))
    return cases


def big_but_allowed() -> list[Case]:
    """Tiny, highly compressible files that decode to just under the 40-megapixel limit."""
    w, h = 6000, 6600  # 39.6 MP
    flat = np.zeros((h, w), np.uint16)
    pal = Image.new("P", (w, h))
    return [
        Case("big", "png-rgb-39.6MP", encode(Image.new("RGB", (w, h), (40, 90, 160)), "PNG")),
        Case("big", "png-rgba-39.6MP", encode(Image.new("RGBA", (w, h), (9, 9, 9, 99)), "PNG")),
        Case("big", "png-i16-39.6MP", encode(Image.fromarray(flat), "PNG")),
        Case("big", "png-palette+transparency-39.6MP", encode(pal, "PNG", transparency=0)),
        Case("big", "jpeg-cmyk-39.6MP", encode(Image.new("CMYK", (w, h)), "JPEG", quality=50)),
        Case("big", "png-8x5000000-strip", encode(Image.new("L", (8, MAX_PIXELS // 8)), "PNG")),
    ]


def tiny_and_thin() -> list[Case]:
    return [
        Case("tiny", "png-1x1", encode(Image.new("RGB", (1, 1)), "PNG"), "reject"),
        Case("tiny", "png-7x7", encode(Image.new("RGB", (7, 7)), "PNG"), "reject"),
        Case("tiny", "png-8x8", encode(photo(8, 8), "PNG"), "ok", photo(8, 8)),
        Case(
            "tiny",
            "gif-8x8",
            encode(photo(8, 8).quantize(16), "GIF"),
            "ok",
            photo(8, 8).quantize(16).convert("RGB"),
        ),
        Case("tiny", "webp-2x2", encode(Image.new("RGB", (2, 2)), "WEBP"), "reject"),
        Case("tiny", "jpeg-1x4000", encode(Image.new("RGB", (1, 4000)), "JPEG"), "reject"),
        Case("tiny", "png-10000x8", encode(photo(10000, 8), "PNG"), "ok", photo(10000, 8)),
        Case(
            "tiny",
            "png-8x10000-1bit",
            encode(Image.new("1", (8, 10000), 1), "PNG"),
            "ok",
            Image.new("RGB", (8, 10000), (255, 255, 255)),
        ),
    ]


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    base = valid_images()
    return [
        *base,
        *exif_cases(),
        *mutations(base, rng),
        *random_bytes(rng),
        *bombs(),
        *tiny_and_thin(),
        *big_but_allowed(),
    ]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def hang_guard(seconds: float = HANG_S) -> Iterator[None]:
    """Dump every thread's stack and exit if the block runs past ``seconds`` (a real hang, never a
    slow machine: see HANG_S), so one stuck decode cannot stall the whole suite."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def measure(run: Callable[[], object]) -> tuple[object, float, float]:
    """(result or exception, seconds, extra peak resident MB) of one call."""
    per_case = _CLEAR_REFS.exists()
    if per_case:
        _CLEAR_REFS.write_text("5")  # reset the resident high-water mark (Linux >= 4.0)
        base = _rss_mb()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with hang_guard():
        result: object = run()
    seconds = time.perf_counter() - start
    peak = _peak_mb() if per_case else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, seconds, max(0.0, peak - base)


def planned() -> list[tuple[Case, bool]]:
    """Every case with whether it also goes through the face detector (a fifth of them)."""
    return [(case, k % 5 == 0) for k, case in enumerate(all_cases())]


def prepare(case: Case, crop: bool) -> object:
    """The app's upload path on one case: a PreparedImage, or the exception it raised."""
    from fxcore.upload.faces import prepare_upload

    try:
        return prepare_upload(case.data, SIZE, True, crop_face=crop)
    except Exception as exc:  # noqa: BLE001 - classified by the caller
        return exc
