"""Hostile uploads, fuzzed: every case gives a correct tensor or an ImageInputError.

The ~330 seeded cases come from ``upload_cases`` (see there). Each case runs
``prepare_upload(data, image_size=64, normalize=True)`` (a fifth also through the face detector)
and must return a finite ``(1, 3, 64, 64)`` tensor that matches the correct decode, or raise an
ImageInputError with a helpful message: no other exception. How long each case takes and how much
memory it needs are measured by ``benchmarks/bench_uploads.py`` (``make bench``), where the limits
are targets; here only a generous hang guard applies. Memory blow-up protection is tested by what
it is: a declared size over the pixel cap is refused from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps
from upload_cases import (
    _STORE,
    SIZE,
    bombs,
    hang_guard,
    photo,
    planned,
    png_claiming,
    prepare,
    with_exif_orientation,
)

from fxcore.data.base import prepare_pil, to_tensor
from fxcore.upload.faces import ImageInputError, prepare_upload

# ImageNet normalisation maps [0, 1] into about [-2.12, 2.64].
LO, HI = (0 - 0.485) / 0.229 - 1e-4, (1 - 0.406) / 0.225 + 1e-4


def expected_tensor(ref: Image.Image) -> torch.Tensor:
    return to_tensor(prepare_pil(ref, SIZE), True)[None]


def test_fuzzed_uploads_give_a_tensor_or_image_input_error() -> None:
    cases = planned()
    assert len(cases) >= 300
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF / truncated data
        for case, crop in cases:
            with hang_guard():
                result = prepare(case, crop)
            where = f"{case.group}/{case.name}"
            if isinstance(result, ImageInputError):
                if case.expect == "ok":
                    problems.append(f"{where}: rejected a valid image ({result})")
                if not str(result) or "Traceback" in str(result):
                    problems.append(f"{where}: unhelpful message {result!r}")
                continue
            if isinstance(result, BaseException):
                problems.append(f"{where}: {type(result).__name__}: {result}")
                continue
            t = result.tensor  # type: ignore[attr-defined]
            if tuple(t.shape) != (1, 3, SIZE, SIZE) or t.dtype != torch.float32:
                problems.append(f"{where}: tensor {tuple(t.shape)} {t.dtype}")
            elif not torch.isfinite(t).all() or t.min() < LO or t.max() > HI:
                problems.append(f"{where}: values outside the normalised range")
            if case.expect == "reject":
                problems.append(f"{where}: accepted, should have been refused")
            if case.reference is not None and not crop:
                err = (t - expected_tensor(case.reference)).abs()
                # Lossless: exactly the reference. Lossy: close on average (a wrong rotation
                # or channel order is off by ~1.7 on average; JPEG's own loss by ~0.2).
                diff = float(err.max() if case.tolerance == 0 else err.mean())
                if diff > case.tolerance:
                    problems.append(f"{where}: differs from the correct decode by {diff:.3f}")
    assert not problems, "\n".join(problems)


def test_exif_orientation_reference_is_right() -> None:
    """The test's own table of stored orientations matches Pillow's exif_transpose."""
    upright = photo(30, 20)
    for k, ops in _STORE.items():
        stored = upright
        for op in ops:
            stored = stored.transpose(op)
        img = Image.open(io.BytesIO(with_exif_orientation(stored, k, "PNG")))
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(img)), np.asarray(upright)), k


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pixel decode Pillow starts (ImageFile.load), by format."""
    seen: list[str] = []
    real = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        seen.append(str(self.format))
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@pytest.mark.parametrize("side", [9000, 40000])
def test_bomb_refused_without_decoding(side: int, decodes: list[str]) -> None:
    """A declared 81 MP or 1.6 GP image is refused from its header: no pixel is decoded."""
    with pytest.raises(ImageInputError, match="megapixels"):
        prepare_upload(png_claiming(side, side), SIZE, True)
    assert decodes == []


@pytest.mark.parametrize("case", [c for c in bombs() if c.expect == "reject"], ids=lambda c: c.name)
def test_every_declared_bomb_is_refused_before_decoding(case, decodes: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageInputError):
            prepare_upload(case.data, SIZE, True)
    assert decodes == [], f"{case.name}: decoding started ({decodes}) before the size check"
