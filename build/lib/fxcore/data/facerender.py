"""The SynthFaces face model: per-item parameters from uniforms, rendering, landmarks and regions.

Shapes live in a face frame (u right, v down, head centre at 0, head half-height 0.66) that is
rotated, scaled and shifted per item, so landmarks and masks follow the pose at any image size.
Pixel maths uses only correctly rounded ops (+ - * / abs min max), so an item renders
bit-identically alone or inside any batch. The dataset around it is :mod:`fxcore.data.synthfaces`.
"""

from __future__ import annotations

import math

import numpy as np

from fxcore.data.base import REGIONS as FACE_REGIONS
from fxcore.data.base import DataError

ATTRIBUTES = ("Smiling", "Male", "Eyes_Open", "Bangs", "Rosy_Cheeks")
REGIONS = (*FACE_REGIONS, "glasses")  # generic regions besides one per attribute
# Columns of U: the attributes, then nuisances, then RGB triples (one uniform each).
COLS = (
    ATTRIBUTES
    + (
        "glasses",
        "open",
        "cx",
        "cy",
        "scale",
        "angle",
        "skin",
        "skin_h",
        "hair",
        "hair_v",
        "bg_dir",
        "light",
        "light_dir",
        "noise",
        "key",
        "ex",
        "ey",
        "gaze",
        "mw",
        "my",
        "curve",
        "iris",
        "lip",
        "frame",
    )
    + tuple(f"{c}{k}" for c in ("bg_a", "bg_b", "shirt") for k in range(3))
)
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.15, 0.08],
        [0.45, 0.28, 0.14],
        [0.85, 0.7, 0.4],
        [0.6, 0.25, 0.1],
        [0.62, 0.62, 0.62],
    ],
    np.float32,
)
_IRIS = np.array([[0.35, 0.2, 0.1], [0.2, 0.4, 0.7], [0.25, 0.5, 0.3]], np.float32)
_WHITE, _BLACK, _TEETH, _BLUSH = np.array(
    [[[0.97, 0.97, 0.95]], [[0, 0, 0]], [[0.97, 0.97, 0.92]], [[0.93, 0.4, 0.45]]], np.float32
)  # (1, 3) each
Box = tuple[float, float, float, float]  # (u0, u1, v0, v1) in face units


def _cos_sin(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin per element via libm, so a value never depends on the array it sits in."""
    return np.array([math.cos(x) for x in a]), np.array([math.sin(x) for x in a])


def derive(u: np.ndarray) -> dict[str, np.ndarray]:
    """Uniforms (N, P) -> named per-item parameters: float32 (N,), colours (N, 3), key uint32."""
    r = {name: u[:, k] for k, name in enumerate(COLS)}
    rgb = lambda c: np.stack([r[f"{c}{k}"] for k in range(3)], 1)  # noqa: E731  (N, 3)
    p = {a: (r[a] < 0.5).astype(np.float32) for a in ATTRIBUTES}  # independent fair coins
    p["glasses"] = (r["glasses"] < 0.3).astype(np.float32)  # distractor, independent of labels
    p["open"] = p["Smiling"] * (r["open"] < 0.5)  # half the smiles show teeth
    p["cos"], p["sin"] = _cos_sin((r["angle"] - 0.5) * 0.42)  # roll within +-12 degrees
    p.update(
        cx=(r["cx"] - 0.5) * 0.14, cy=0.07 + (r["cy"] - 0.5) * 0.1, scale=0.8 + 0.2 * r["scale"]
    )
    light, dark = np.array([0.98, 0.84, 0.74]), np.array([0.42, 0.28, 0.2])
    hue = 1 + 0.08 * (r["skin_h"][:, None] - 0.5) * np.array([1, 0, -1])  # warmer / cooler
    p["skin_rgb"] = (light + r["skin"][:, None] * (dark - light)) * hue
    p["hair_rgb"] = _HAIR[(r["hair"] * len(_HAIR)).astype(int)] * (0.8 + 0.4 * r["hair_v"][:, None])
    p["bg_a"], p["bg_b"] = 0.2 + 0.7 * rgb("bg_a"), 0.2 + 0.7 * rgb("bg_b")
    for name, key in (("bg", "bg_dir"), ("light", "light_dir")):
        p[name + "_x"], p[name + "_y"] = _cos_sin(6.2832 * r[key])
    p["light"], p["noise"] = 0.25 * r["light"], 14.0 * r["noise"]  # gain slope, noise in 0..255
    p["ex"], p["ey"] = 0.19 + 0.05 * r["ex"], -0.05 + 0.04 * (r["ey"] - 0.5)
    p["gaze"] = 0.05 * (r["gaze"] - 0.5)
    p["mw"], p["my"] = 0.12 + 0.05 * r["mw"], 0.32 + 0.04 * r["my"]
    # Mouth curve depth: neutral mouths are nearly straight, smiles curve up at the corners.
    p["curve"] = np.where(p["Smiling"] > 0, 0.045 + 0.02 * r["curve"], 0.016 * (r["curve"] - 0.5))
    p["iris_rgb"] = _IRIS[(r["iris"] * 3).astype(int)]
    p["lip_rgb"] = np.array([0.72, 0.3, 0.32]) * (0.75 + 0.3 * r["lip"][:, None])
    p["shirt_rgb"] = 0.15 + 0.7 * rgb("shirt")
    p["frame_rgb"] = np.repeat(0.05 + 0.4 * r["frame"][:, None], 3, 1)
    p = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in p.items()}
    p["key"] = (r["key"] * 2**32).astype(np.uint32)  # per-item noise seed
    return p


def _c(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place (soft alpha)."""
    return np.clip(x, 0.0, 1.0, out=x)


def _band(x: np.ndarray, half: float | np.ndarray, e: np.ndarray) -> np.ndarray:
    """Soft alpha of ``|x| < half`` with a one-pixel edge (``e``: pixels per face unit, (B,1,1))."""
    return _c((half - np.abs(x)) * e + 0.5)


def _ell(u: np.ndarray, v: np.ndarray, cu, cv, ru: float, rv: float, e: np.ndarray) -> np.ndarray:
    """Soft alpha of the ellipse centred at (cu, cv) with radii (ru, rv), face units."""
    a, b = (u - cu) * (1.0 / ru), (v - cv) * (1.0 / rv)
    a *= a
    b *= b
    return _c((1.0 - a - b) * (e * (0.5 * min(ru, rv))) + 0.5)


def pose_xy(p: dict[str, np.ndarray], fu: np.ndarray, fv: np.ndarray, size: int) -> np.ndarray:
    """Face coords (B, M) -> pixel x, y (B, M, 2); (0, 0) is the centre of the top-left pixel."""
    s, c, sn = p["scale"][:, None], p["cos"][:, None], p["sin"][:, None]
    x = p["cx"][:, None] + s * (c * fu - sn * fv)
    y = p["cy"][:, None] + s * (sn * fu + c * fv)
    return np.stack([(x + 1) * size / 2 - 0.5, (y + 1) * size / 2 - 0.5], -1)


def _window(p: dict[str, np.ndarray], box: Box, size: int) -> tuple[slice, slice]:
    """Pixel slices (rows, cols) covering a face box for every item of the batch, +2 px margin."""
    u0, u1, v0, v1 = box
    xy = pose_xy(p, np.array([[u0, u1, u0, u1]]), np.array([[v0, v0, v1, v1]]), size)
    lo, hi = np.floor(xy.min((0, 1))).astype(int) - 2, np.ceil(xy.max((0, 1))).astype(int) + 3
    return slice(max(lo[1], 0), min(hi[1], size)), slice(max(lo[0], 0), min(hi[0], size))


def face_grid(p: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face coords u, v (B, S, S) of every pixel centre, and pixels per face unit e (B, 1, 1)."""
    g = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    c, sn, inv = p["cos"][:, None, None], p["sin"][:, None, None], 1.0 / p["scale"][:, None, None]
    dx, dy = g[None, None, :] - p["cx"][:, None, None], g[None, :, None] - p["cy"][:, None, None]
    e = p["scale"][:, None, None] * (size / 2)
    return (c * dx + sn * dy) * inv, (c * dy - sn * dx) * inv, e


def render(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Draw a batch of faces back to front -> uint8 (B, 3, S, S)."""
    b, (u, v, e) = len(p["cx"]), face_grid(p, size)
    q = {k: x[:, None, None] for k, x in p.items() if x.ndim == 1}  # (B, 1, 1) per-item scalars
    g = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    t = 0.5 + 0.35 * (q["bg_x"] * g[None, None, :] + q["bg_y"] * g[None, :, None])  # (B, S, S)
    img = np.empty((b, 3, size, size), np.float32)
    a, d = p["bg_a"][:, :, None, None], (p["bg_b"] - p["bg_a"])[:, :, None, None]  # (B, 3, 1, 1)
    for k in range(3):  # background: two-colour gradient
        img[:, k] = a[:, k] + t * d[:, k]

    def paint(alpha: np.ndarray, rgb: np.ndarray, w: tuple[slice, slice]) -> None:
        for k in range(3):  # img[w] += alpha * (rgb - img[w]), per channel, in place
            view = img[:, k, w[0], w[1]]
            view += alpha * (rgb[:, k, None, None] - view)

    def win(box: Box) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        w = _window(p, box, size)  # each feature only touches the pixels it can reach
        return w, u[:, w[0], w[1]], v[:, w[0], w[1]]

    skin, hair, male = p["skin_rgb"], p["hair_rgb"], q["Male"]
    w, uu, vv = win((-0.7, 0.7, -0.84, 0.66))  # hair behind the head: cap, plus a bob if long
    cap = _ell(uu, vv, 0, -0.04, 0.57, 0.76, e) * _c((0.05 - vv) * e)
    paint(np.maximum(cap, (1.0 - male) * _ell(uu, vv, 0, 0.08, 0.66, 0.56, e)), hair * 0.8, w)
    w, uu, vv = win((-1.3, 1.3, 0.3, 1.9))  # shoulders and neck, in front of the hair
    paint(_ell(uu, vv, 0, 1.3, 1.0, 0.55, e), p["shirt_rgb"], w)
    paint(_band(uu, 0.19, e) * _c((vv - 0.3) * e), skin * 0.85, w)
    w, uu, vv = win((-0.6, 0.6, -0.12, 0.16))  # ears: short hair only (Male region)
    paint(male * _ell(np.abs(uu), vv, 0.5, 0.02, 0.07, 0.12, e), skin * 0.92, w)
    w, uu, vv = win((-0.52, 0.52, -0.66, 0.7))  # head
    paint(_ell(uu, vv, 0, 0.02, 0.5, 0.66, e), skin, w)
    w, uu, vv = win((-0.55, 0.55, -0.72, -0.2))  # front hair: high hairline, or jagged Bangs
    jag = uu * 9.0
    jag = np.abs(jag - np.floor(jag) - 0.5) * 0.05
    line = -0.5 + 0.55 * uu * uu + q["Bangs"] * (0.2 - 0.45 * uu * uu + jag)
    paint(_ell(uu, vv, 0, 0.0, 0.53, 0.7, e) * _c((line - vv) * e + 0.5), hair, w)
    w, uu, vv = win((-0.49, 0.49, -0.22, 0.1))  # sideburns (Male)
    paint(male * _band(np.abs(uu) - 0.44, 0.03, e) * _band(vv + 0.06, 0.14, e), hair, w)
    w, uu, vv = win((-0.42, 0.42, -0.02, 0.24))  # Rosy_Cheeks: radial blush
    blush = _c(1.0 - ((np.abs(uu) - 0.28) ** 2 + (vv - 0.11) ** 2) * 100)
    paint(q["Rosy_Cheeks"] * 0.6 * blush, _BLUSH, w)
    w, uu, vv = win((-0.1, 0.1, -0.03, 0.2))  # nose: bridge shade and nostrils
    paint(_band(uu - 0.03, 0.008, e) * _band(vv - 0.06, 0.07, e) * 0.5, skin * 0.7, w)
    paint(_ell(np.abs(uu), vv, 0.035, 0.15, 0.022, 0.013, e), skin * 0.5, w)
    # Mouth (Smiling): lips between curves c0 + k f (0.25 .. 1.6), f = 1 - (u / mw)^2.
    w, uu, vv = win((-0.28, 0.28, 0.22, 0.48))
    f, c0 = 1.0 - (uu / q["mw"]) ** 2, q["my"] - 0.02 * q["Smiling"]  # smiles lift the corners
    top, bot, mid = c0 + q["curve"] * f * 0.25, c0 + q["curve"] * f * 1.6, c0 + q["curve"] * f
    wide, shut, gap = _band(uu, q["mw"], e), 1 - q["open"], _c((vv - top) * e) * _c((bot - vv) * e)
    paint(wide * _band(vv - (top + bot) * 0.5, np.abs(bot - top) * 0.5 + 0.012, e), p["lip_rgb"], w)
    paint(shut * wide * _band(vv - mid, 0.013, e), p["lip_rgb"] * 0.8, w)
    paint(q["open"] * wide * gap, skin * 0.25, w)
    paint(q["open"] * wide * gap * _c((top + 0.025 - vv) * e), _TEETH, w)
    w, uu, vv = win((-0.45, 0.45, -0.32, 0.12))  # eyes (Eyes_Open), brows (Male), glasses
    du, dv, dg = np.abs(uu) - q["ex"], vv - q["ey"], np.abs(uu - q["gaze"]) - q["ex"]
    white = q["Eyes_Open"] * _ell(du, dv, 0, 0, 0.095, 0.055, e)
    paint(white, _WHITE, w)
    paint(_ell(dg, dv, 0, 0, 0.042, 0.042, e) * white, p["iris_rgb"], w)
    paint(_ell(dg, dv, 0, 0, 0.02, 0.02, e) * white, _BLACK, w)
    ring = du * du * (1 / 0.095**2) + dv * dv * (1 / 0.055**2) - 1.0
    paint(q["Eyes_Open"] * _band(ring, 0.2, e * 0.03), skin * 0.25, w)  # eye outline
    lid = q["ey"] + 0.02 * (1 - (du / 0.1) ** 2)  # closed: a lash line curving down
    paint((1 - q["Eyes_Open"]) * _band(du, 0.1, e) * _band(vv - lid, 0.01, e), skin * 0.25, w)
    by = q["ey"] - 0.15 + 0.035 * male - 0.025 * (1 - (du / 0.13) ** 2)  # Male: low, thick
    # Brows always darker than the skin (not just the hair colour): the Male cue must stay visible
    # on grey- or blond-haired, pale faces, where hair-coloured brows would vanish.
    brow = np.minimum(hair, skin) * 0.45
    paint(_band(du, 0.13, e) * _band(vv - by, 0.011 + 0.012 * male, e), brow, w)
    ring = np.abs(du * du * (1 / 0.14**2) + dv * dv * (1 / 0.1**2) - 1.0)
    frame = _band(ring, 0.2, e * 0.05) + _band(uu, 0.08, e) * _band(dv + 0.02, 0.009, e)
    paint(q["glasses"] * _c(frame), p["frame_rgb"], w)
    # Lighting ramp, then pixel noise from an integer hash of (item key, pixel), 10 bits/channel.
    gain = 1.0 + q["light"] * (q["light_x"] * g[None, None, :] + q["light_y"] * g[None, :, None])
    h = np.arange(size * size, dtype=np.uint32)[None, :] * np.uint32(0x9E3779B9) + p["key"][:, None]
    for mul in (0x7FEB352D, 0x846CA68B):
        h ^= h >> np.uint32(16)
        h *= np.uint32(mul)
    h = (h ^ (h >> np.uint32(15))).reshape(b, size, size)
    out = np.empty((b, 3, size, size), np.uint8)
    for k in range(3):
        n = ((h >> np.uint32(10 * k)) & np.uint32(1023)).astype(np.float32) * (1 / 1023) - 0.5
        out[:, k] = np.clip(img[:, k] * gain * 255.0 + n * q["noise"] + 0.5, 0, 255)
    return out


def region(name: str, p: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ground-truth region as bool (B, S, S) from face coords u, v (B, S, S)."""
    q = {k: x[:, None, None] for k, x in p.items() if x.ndim == 1}
    au, dv = np.abs(u), v - q["ey"]
    box = lambda x, lo, hi: (x >= lo) & (x <= hi)  # noqa: E731
    if name in ("mouth", "Smiling"):
        return (au <= q["mw"] + 0.09) & box(v - q["my"], -0.09, 0.12)
    if name in ("eyes", "Eyes_Open"):
        return (np.abs(au - q["ex"]) <= 0.14) & (np.abs(dv) <= 0.075)
    if name == "nose":
        return (au <= 0.09) & box(v, -0.03, 0.2)
    if name == "glasses":
        return (au <= q["ex"] + 0.17) & (np.abs(dv) <= 0.13)
    if name == "Male":  # brows, ears + sideburns, long hair beside the face; never the mouth
        off_head = (u / 0.46) ** 2 + ((v - 0.02) / 0.62) ** 2 >= 1.0
        brows = (np.abs(au - q["ex"]) <= 0.16) & box(dv, -0.21, -0.07)
        sides = box(au, 0.38, 0.58) & box(v, -0.25, 0.16)
        return brows | sides | (off_head & box(au, 0.16, 0.74) & box(v, -0.22, 0.66))
    if name == "Bangs":
        return (au <= 0.55) & box(v, -0.54, -0.24)
    if name == "Rosy_Cheeks":
        return (au - 0.28) ** 2 + (v - 0.11) ** 2 <= 0.12**2
    raise DataError(f"unknown region {name!r}; choose from {', '.join(ATTRIBUTES + REGIONS)}")
