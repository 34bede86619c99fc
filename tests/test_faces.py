"""Upload decoding (all modes, EXIF, hostile files), face framing and the training transform."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fxcore.data import base as data
from fxcore.upload import faces
from fxcore.upload.faces import ImageInputError

CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba-10k"


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient_rgb(w: int = 40, h: int = 30) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` with a tiny IDAT: costs nothing to make."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_rgb_roundtrip_and_inputs(tmp_path: Path) -> None:
    src = gradient_rgb()
    raw = encode(src)
    path = tmp_path / "x.png"
    path.write_bytes(raw)
    for given in (raw, bytearray(raw), path, str(path), io.BytesIO(raw)):
        img = faces.load_image(given)
        assert img.mode == "RGB" and img.size == (40, 30)
        np.testing.assert_array_equal(np.asarray(img), np.asarray(src))
    with pytest.raises(ImageInputError, match="cannot read"):
        faces.load_image(tmp_path / "missing.png")


def test_grayscale_and_bilevel_modes() -> None:
    gray = gradient_rgb().convert("L")
    img = faces.load_image(encode(gray))
    arr = np.asarray(img)
    assert img.mode == "RGB"
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], np.asarray(gray))
    bilevel = Image.fromarray((np.indices((20, 20)).sum(0) % 2 * 255).astype(np.uint8)).convert("1")
    got = np.asarray(faces.load_image(encode(bilevel)))
    assert set(np.unique(got)) == {0, 255}
    np.testing.assert_array_equal(got[..., 0], np.asarray(bilevel.convert("L")))


def test_alpha_modes_composite_on_white() -> None:
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 8, 16))  # left half fully transparent
    rgba.paste((0, 0, 0, 128), (8, 0, 16, 8))  # top-right half-transparent black
    got = np.asarray(faces.load_image(encode(rgba)))
    assert tuple(got[12, 2]) == (255, 255, 255)
    assert tuple(got[12, 12]) == (255, 0, 0)
    assert all(abs(int(v) - 127) <= 1 for v in got[2, 12])
    la = Image.new("LA", (10, 10), (0, 0))
    la.paste((50, 255), (0, 0, 5, 10))
    got = np.asarray(faces.load_image(encode(la)))
    assert tuple(got[0, 0]) == (50, 50, 50) and tuple(got[0, 9]) == (255, 255, 255)
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 200, 0] + [10, 20, 30] * 255)
    pal.paste(1, (0, 0, 10, 5))
    for fmt in ("PNG", "GIF"):
        got = np.asarray(faces.load_image(encode(pal, fmt, transparency=0)))
        assert tuple(got[0, 0]) == (10, 20, 30) and tuple(got[9, 0]) == (255, 255, 255), fmt
    rgb_key = Image.new("RGB", (10, 10), (1, 2, 3))  # PNG tRNS colour key
    got = np.asarray(faces.load_image(encode(rgb_key, transparency=(1, 2, 3))))
    assert tuple(got[0, 0]) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    raw = encode(cmyk, "JPEG", quality=95)
    img = faces.load_image(raw)
    assert img.mode == "RGB"
    r, g, b = np.asarray(img)[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60
    want = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(img), want)


def test_sixteen_bit_and_float_scaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    src = Image.fromarray(values)
    assert src.mode == "I;16"
    got = np.asarray(faces.load_image(encode(src)))[..., 0]
    np.testing.assert_array_equal(got, np.rint(values / 257.0).astype(np.uint8))
    assert got.max() == 255 and got.min() == 0
    as_int = Image.fromarray(values.astype(np.int32))  # mode "I" holding 16-bit values
    np.testing.assert_array_equal(np.asarray(faces.load_image(encode(as_int, "TIFF")))[..., 0], got)
    floats = Image.fromarray((values / 65535.0).astype(np.float32))  # mode "F" in [0, 1]
    got_f = np.asarray(faces.load_image(encode(floats, "TIFF")))[..., 0].astype(int)
    assert np.abs(got_f - got.astype(int)).max() <= 1


def test_exif_orientation_6_is_rotated() -> None:
    src = Image.new("RGB", (80, 40), (0, 0, 255))
    src.paste((255, 0, 0), (0, 0, 20, 20))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored image rotated 90 degrees clockwise
    img = faces.load_image(encode(src, "JPEG", quality=95, exif=exif.tobytes()))
    assert img.size == (40, 80)
    arr = np.asarray(img).astype(int)
    assert arr[5, 34, 0] > 200 and arr[5, 34, 2] < 60  # top-left went to top-right
    assert arr[5, 5, 2] > 200 and arr[5, 5, 0] < 60


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 0, 255))]
    raw = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(io.BytesIO(raw)), "n_frames", 1) == 2
    assert tuple(np.asarray(faces.load_image(raw))[6, 6]) == (255, 0, 0)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"", "empty"),
        (b"hello, this is not a picture at all" * 10, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10, "not an image"),
    ],
)
def test_non_images_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(ImageInputError, match=match):
        faces.load_image(raw)


def test_truncated_and_corrupt_files_rejected() -> None:
    photo = gradient_rgb(200, 150)
    jpeg = encode(photo, "JPEG", quality=90)
    png = encode(photo, "PNG")
    for bad in (jpeg[: len(jpeg) // 2], png[: len(png) // 2], png[:60] + b"\x00" * 500):
        with pytest.raises(ImageInputError, match="damaged|not an image"):
            faces.load_image(bad)
    pcx = encode(photo, "PCX")  # Pillow reads it, uploads may not
    with pytest.raises(ImageInputError, match="JPEG, PNG"):
        faces.load_image(pcx)


def test_too_small_rejected() -> None:
    with pytest.raises(ImageInputError, match="1x1 pixels.*at least 8x8"):
        faces.load_image(encode(Image.new("RGB", (1, 1))))
    with pytest.raises(ImageInputError, match="at least 8x8"):
        faces.load_image(encode(Image.new("RGB", (100, 7))))
    assert faces.load_image(encode(Image.new("RGB", (8, 8)))).size == (8, 8)


def test_huge_dimensions_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(self):  # the size check must come before any pixel is decoded
        raise AssertionError(f"decoding a {self.size} image before the size check")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        for side in (7000, 12000, 20000):  # under, above and far above Pillow's own bomb limit
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with pytest.raises(ImageInputError, match="megapixels"):
                    faces.load_image(png_header_only(side, side))
    with pytest.raises(ImageInputError, match="limit is 0 megapixels"):
        faces.load_image(encode(gradient_rgb(300, 300)), max_pixels=50_000)
    # a real, cheap-to-store large image under a raised cap decodes fine
    big = Image.new("1", (3000, 2000), 1)
    assert faces.load_image(encode(big), max_pixels=10_000_000).size == (3000, 2000)


def test_prepare_upload_matches_training_transform() -> None:
    raw = encode(gradient_rgb(90, 60), "JPEG", quality=90)
    for normalize in (True, False):
        prep = faces.prepare_upload(raw, 32, normalize)
        loaded = faces.load_image(raw)
        display = data.prepare_pil(loaded, 32)
        assert prep.display.size == (32, 32) and prep.display.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(prep.display), np.asarray(display))
        want = data.to_tensor(display, normalize)[None]
        assert prep.tensor.shape == (1, 3, 32, 32) and prep.tensor.dtype == want.dtype
        assert bool((prep.tensor == want).all())
        assert prep.face_box is None and not prep.cropped and "centre" in prep.message
        assert prep.crop_box == data.square_crop_box(90, 60) and prep.original_size == (90, 60)
    gray = faces.prepare_upload(raw, 28, False, mode="L")
    assert gray.tensor.shape == (1, 1, 28, 28)


def test_training_crop_box_geometry() -> None:
    assert faces.training_crop_box((1000, 1000), (100, 100, 200, 200)) == (65, 51, 235, 221)
    left, top, right, bottom = faces.training_crop_box((300, 400), (0, 0, 100, 100))
    assert (left, top) == (0, 0) and right - left == bottom - top == 170
    assert faces.training_crop_box((300, 200), (50, 20, 250, 220)) == (50, 0, 250, 200)
    img = gradient_rgb(300, 200)
    assert faces.crop_to_training_framing(img, (50, 20, 250, 220)).size == (200, 200)


def test_detect_face_on_synthetic_image() -> None:
    if not faces.face_detector_available():
        pytest.skip("this OpenCV has no Haar cascade (OpenCV 5); install opencv-python-headless<5")
    for img in (gradient_rgb(2000, 1500), gradient_rgb(40, 30), Image.new("RGB", (640, 480))):
        box = faces.detect_face(img)
        assert box is None or (0 <= box[0] < box[2] <= img.width and 0 <= box[1] < box[3])
    prep = faces.prepare_upload(encode(gradient_rgb(120, 90)), 32, True, crop_face=True)
    assert not prep.cropped and prep.message == "no face found; using the centre crop"
    plain = faces.prepare_upload(encode(gradient_rgb(120, 90)), 32, True)
    assert bool((prep.tensor == plain.tensor).all())


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return ix / (area - ix)


def test_real_face_is_found_and_framed_like_celeba() -> None:
    folder = CELEBA / "img_align_celeba"
    if not folder.is_dir():
        pytest.skip(f"real CelebA subset not found at {folder}")
    if not faces.face_detector_available():
        pytest.skip("this OpenCV has no Haar cascade (OpenCV 5); install opencv-python-headless<5")
    good = 0
    for i in range(1, 11):
        face = faces.load_image(folder / f"{i:06d}.jpg").resize((178, 218), Image.BILINEAR)
        canvas = Image.new("RGB", (600, 500), (90, 110, 130))
        canvas.paste(face, (300, 150))
        box = faces.detect_face(canvas)
        if box is None:
            continue
        assert 300 <= box[0] < box[2] <= 478 and 150 <= box[1] < box[3] <= 368
        # the crop should recover the square that training takes from the aligned image
        good += iou(faces.training_crop_box(canvas.size, box), (300, 170, 478, 348)) > 0.6
        if i == 1:
            prep = faces.prepare_upload(encode(canvas, "JPEG", quality=95), 64, True, True)
            assert prep.cropped and prep.face_box is not None and "face found" in prep.message
            assert iou(prep.crop_box, (300, 170, 478, 348)) > 0.5
    assert good >= 5  # Haar finds ~80% of these framed faces
