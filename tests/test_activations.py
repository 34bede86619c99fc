"""Feature maps, Grad-CAM (vs a hand-written reference), hooks, modes and thread safety."""

from __future__ import annotations

import gc
import threading
import weakref

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fxcore.explain import activations as act
from fxcore.explain import gradcam


class MiniVGG(nn.Module):
    """torchvision-VGG-shaped: features / avgpool / classifier, in-place ReLUs like VGG."""

    def __init__(self, num_outputs: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(64, 16), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(16, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def make_model(num_outputs: int = 1, seed: int = 0) -> MiniVGG:
    torch.manual_seed(seed)
    return MiniVGG(num_outputs)


def inputs(n: int = 4, seed: int = 1, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def reference_cam(
    model: nn.Module, x: torch.Tensor, layer: str, sign: float = 1.0, cls: int | None = 0
) -> np.ndarray:
    """Grad-CAM by hand: autograd.grad of the score w.r.t. the layer output A."""
    model.eval()
    saved: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        saved["a"] = out
        return out.clone()  # keep A intact when an in-place ReLU follows

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        out = model(x)  # (B, K)
    finally:
        handle.remove()
    idx = out.argmax(1) if cls is None else torch.full((len(x),), cls)
    score = sign * out.gather(1, idx[:, None]).sum()
    (grad,) = torch.autograd.grad(score, saved["a"])  # (B, C, h, w)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    cam = F.relu((weights * saved["a"]).sum(dim=1, keepdim=True))  # (B, 1, h, w)
    up = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return up[:, 0].detach().numpy()


def test_layer_names() -> None:
    model = make_model()
    assert act.conv_layers(model) == ["features.0", "features.3", "features.6"]
    assert act.last_conv_layer(model) == "features.6"
    with pytest.raises(act.ActivationError, match="no Conv2d"):
        act.last_conv_layer(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("layer", ["features.6", "features.3", "features.7", "features.4"])
def test_grad_cam_matches_reference(layer: str) -> None:
    model, x = make_model(), inputs(4)
    pos = gradcam.grad_cam_batch(model, x, layer, "positive", batch_size=3)
    neg = gradcam.grad_cam_batch(model, x, layer, "negative", batch_size=2)
    assert pos.shape == (4, 32, 32) and pos.dtype == np.float32
    np.testing.assert_allclose(pos, reference_cam(model, x, layer, +1.0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(neg, reference_cam(model, x, layer, -1.0), atol=1e-5, rtol=0)
    assert pos.max() > 0 and neg.max() > 0  # the fixture explains something both ways
    assert (pos >= 0).all() and (neg >= 0).all()
    single = gradcam.grad_cam(model, x[1], layer, target="negative")
    np.testing.assert_allclose(single, neg[1], atol=1e-6)
    # int targets on a single logit: 1 = the attribute (positive), 0 = its absence (negative)
    np.testing.assert_allclose(gradcam.grad_cam(model, x[:1], layer, target=1), pos[0], atol=1e-6)
    np.testing.assert_allclose(gradcam.grad_cam(model, x[:1], layer, target=0), neg[0], atol=1e-6)
    assert act.active_hook_count(model) == 0


def test_grad_cam_multiclass() -> None:
    model, x = make_model(num_outputs=3, seed=3), inputs(5, seed=4)
    for cls in range(3):
        got = gradcam.grad_cam_batch(model, x, "features.6", target=cls)
        np.testing.assert_allclose(got, reference_cam(model, x, "features.6", 1.0, cls), atol=1e-5)
    got = gradcam.grad_cam_batch(model, x, "features.6", target="positive")
    np.testing.assert_allclose(got, reference_cam(model, x, "features.6", 1.0, None), atol=1e-5)
    got = gradcam.grad_cam_batch(model, x, "features.6", target="negative")
    np.testing.assert_allclose(got, reference_cam(model, x, "features.6", -1.0, None), atol=1e-5)
    with pytest.raises(act.ActivationError, match="outside"):
        gradcam.grad_cam(model, x, "features.6", target=7)
    assert act.active_hook_count(model) == 0


def test_grad_cam_bad_inputs() -> None:
    model, x = make_model(), inputs(2)
    with pytest.raises(act.ActivationError, match="target"):
        gradcam.grad_cam(model, x, "features.6", target="up")
    with pytest.raises(act.ActivationError, match="classes 0 and 1"):
        gradcam.grad_cam(model, x, "features.6", target=2)
    with pytest.raises(ValueError, match="features.0"):
        gradcam.grad_cam(model, x, "features.99")
    with pytest.raises(act.ActivationError, match="not a .B, C, h, w. map.*features.6"):
        gradcam.grad_cam(model, x, "classifier.0")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4), nn.ReLU(), nn.Linear(4, 10))
    with pytest.raises(act.ActivationError, match="no conv layer"):
        gradcam.grad_cam(mlp, x, "1")
    assert act.active_hook_count(model) == 0


def test_feature_maps() -> None:
    model, x = make_model(), inputs(3)
    fm = act.feature_maps(model, x, "features.7", top_k=5)
    model.eval()
    with torch.no_grad():
        a = model.features[:8](x[:1])[0]  # (16, 8, 8)
        logit = float(model(x[:1])[0, 0])
    np.testing.assert_allclose(fm.activation, a.numpy(), atol=1e-6)
    np.testing.assert_allclose(fm.channel_mean, a.mean(0).numpy(), atol=1e-6)
    means = a.mean(dim=(1, 2)).numpy()
    assert list(fm.top_channels) == list(np.argsort(-means, kind="stable")[:5])
    assert fm.top_maps_up.shape == (5, 32, 32) and fm.channel_mean_up.shape == (32, 32)
    up = F.interpolate(a[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(fm.top_maps_up, up[fm.top_channels].numpy(), atol=1e-5)
    np.testing.assert_allclose(fm.channel_mean_up, up.mean(0).numpy(), atol=1e-5)
    assert fm.logit == pytest.approx(logit, abs=1e-6)
    assert fm.probability == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    # the conv output before an in-place ReLU is captured raw (can be negative)
    assert act.feature_maps(model, x, "features.6").activation.min() < 0
    multi = act.feature_maps(make_model(num_outputs=10), x[0], "features.0", top_k=100)
    assert multi.probability.shape == (10,) and multi.probability.sum() == pytest.approx(1.0)
    assert len(multi.top_channels) == 8  # capped at the channel count
    with pytest.raises(act.ActivationError, match="not a"):
        act.feature_maps(model, x, "classifier.0")
    assert act.active_hook_count(model) == 0


def test_capture_removes_hooks_even_on_error() -> None:
    model, x = make_model(), inputs(2)
    with act.capture(model, ["features.0", "features.7"]) as store:
        assert act.active_hook_count(model) == 2
        model(x)
    assert set(store) == {"features.0", "features.7"} and store["features.0"].shape == (
        2,
        8,
        32,
        32,
    )
    assert act.active_hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), act.capture(model, "features.3"):
        raise RuntimeError("boom")
    assert act.active_hook_count(model) == 0
    with (
        pytest.raises(ValueError, match=r"unknown layer 'nope'.*features\.0"),
        act.capture(model, ["features.0", "nope"]),
    ):
        pass
    assert act.active_hook_count(model) == 0


def test_modes_and_requires_grad_restored() -> None:
    model, x = make_model(), inputs(2)
    model.train()
    model.classifier[2].eval()
    model.features[0].weight.requires_grad_(False)
    before = [(n, m.training) for n, m in model.named_modules()]
    grads = [(n, p.requires_grad) for n, p in model.named_parameters()]
    a = act.feature_maps(model, x, "features.6")
    b = act.feature_maps(model, x, "features.6")
    assert a.logit == b.logit  # dropout off: computed in eval mode
    cam1 = gradcam.grad_cam(model, x, "features.3")
    cam2 = gradcam.grad_cam(model, x, "features.3")
    np.testing.assert_array_equal(cam1, cam2)
    assert [(n, m.training) for n, m in model.named_modules()] == before
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == grads
    assert all(p.grad is None for p in model.parameters())  # no gradient left on the weights


def test_batchnorm_statistics_untouched() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradcam.grad_cam_batch(model, inputs(4) * 3 + 1, "0")
    act.feature_maps(model, inputs(2) * 3 + 1, "2")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # eval(): running stats not updated
    assert model.training


def test_frozen_model_grad_cam() -> None:
    model, x = make_model(), inputs(2)
    for p in model.parameters():
        p.requires_grad_(False)
    np.testing.assert_allclose(
        gradcam.grad_cam_batch(model, x, "features.6"),
        reference_cam(make_model(), x, "features.6"),
        atol=1e-5,
    )
    assert not any(p.requires_grad for p in model.parameters())


def test_threads_share_one_model() -> None:
    model = make_model()
    xs = [inputs(3, seed=10 + i) for i in range(4)]
    expected = [
        (
            gradcam.grad_cam_batch(model, x, "features.6", batch_size=2),
            act.feature_maps(model, x, "features.3"),
        )
        for x in xs
    ]
    errors: list[BaseException] = []
    results: dict[tuple[int, int], tuple[np.ndarray, act.FeatureMaps]] = {}

    def work(i: int) -> None:
        try:
            for rep in range(4):
                cam = gradcam.grad_cam_batch(model, xs[i], "features.6", batch_size=2)
                results[(i, rep)] = (cam, act.feature_maps(model, xs[i], "features.3"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, _rep), (cam, fm) in results.items():
        np.testing.assert_array_equal(cam, expected[i][0])
        np.testing.assert_array_equal(fm.activation, expected[i][1].activation)
        assert fm.logit == expected[i][1].logit
    assert len(results) == 16 and act.active_hook_count(model) == 0


def test_model_lock_is_per_model_and_weak() -> None:
    m1, m2 = make_model(), make_model()
    lock = act.model_lock(m1)
    assert act.model_lock(m1) is lock and act.model_lock(m2) is not lock
    with lock, lock:  # re-entrant
        pass
    n, ref = len(act._LOCKS), weakref.ref(m1)
    del m1, lock
    gc.collect()
    assert ref() is None and m2 in act._LOCKS and len(act._LOCKS) <= n - 1


def test_normalize_and_range() -> None:
    a, b = np.array([[0.0, 2.0]]), np.array([[0.5, 1.0]])
    assert act.shared_range([a, b]) == (0.0, 2.0)
    sa, sb = act.normalize_maps([a, b], shared=True)
    np.testing.assert_allclose(sa, [[0.0, 1.0]]) and np.testing.assert_allclose(sb, [[0.25, 0.5]])
    pa, pb = act.normalize_maps([a, b], shared=False)
    np.testing.assert_allclose(pa, [[0.0, 1.0]]) and np.testing.assert_allclose(pb, [[0.5, 1.0]])
    assert act.shared_range([np.array([-1.0, 3.0])]) == (-1.0, 3.0)
    (z,) = act.normalize_maps([np.zeros((2, 2))])
    assert np.all(z == 0) and act.shared_range([np.zeros(3)]) == (0.0, 1.0)


def test_overlay() -> None:
    img = np.full((4, 4, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 16).reshape(4, 4)
    out = act.overlay(img, heat, 0.0, 1.0)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(act.overlay(img, heat, 0.0, 1.0, alpha=0.0), img)
    full = act.overlay(img, heat, 0.0, 1.0, alpha=1.0, cmap="viridis")
    want = np.rint(np.asarray(matplotlib.colormaps["viridis"](1.0))[:3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(full[3, 3], want)
    assert act.overlay(img[..., 0], heat, 0.0, 1.0).shape == (4, 4, 3)
    with pytest.raises(act.ActivationError, match="does not match"):
        act.overlay(img, np.zeros((3, 3)), 0.0, 1.0)


def test_grad_cam_both_equals_two_separate_calls() -> None:
    from fxcore.explain.gradcam import grad_cam, grad_cam_both
    from fxcore.models.nets import build_model

    torch.manual_seed(0)
    model = build_model("vgg-mini", 1).eval()
    x = torch.randn(1, 3, 32, 32)
    for layer in ("features.3", "features.23"):
        pos, neg = grad_cam_both(model, x, layer)
        np.testing.assert_allclose(pos, grad_cam(model, x, layer, "positive"), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(neg, grad_cam(model, x, layer, "negative"), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("outputs", [1, 10])
@pytest.mark.parametrize(
    ("layer", "cam_at"),
    [
        ("features.6", "features.6"),
        ("features.1", "features.6"),
        ("features.7", "features.3"),
        ("features.2", "features.0"),
        ("features.5", "features.5"),
    ],
)
def test_explain_image_equals_separate_calls(outputs: int, layer: str, cam_at: str) -> None:
    """The fused pass gives what feature_maps + grad_cam_both give (before, after, at the CAM layer)."""
    model, x = make_model(outputs), inputs(1, seed=3)
    model.train()
    model.features[3].weight.requires_grad_(False)
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    got = gradcam.explain_image(model, x, layer, cam_at, top_k=4)
    want = act.feature_maps(model, x, layer, top_k=4)
    pos, neg = gradcam.grad_cam_both(model, x, cam_at)
    np.testing.assert_allclose(got.maps.activation, want.activation, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.maps.channel_mean_up, want.channel_mean_up, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.maps.top_maps_up, want.top_maps_up, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got.maps.top_channels, want.top_channels)
    np.testing.assert_allclose(got.maps.logit, want.logit, rtol=1e-6)
    np.testing.assert_allclose(got.cam_positive, pos, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.cam_negative, neg, rtol=1e-5, atol=1e-7)
    cls = None if outputs > 1 else 0  # K > 1: the predicted class, as grad_cam_both
    np.testing.assert_allclose(
        got.cam_positive, reference_cam(model, x, cam_at, 1.0, cls)[0], rtol=1e-5, atol=1e-6
    )
    assert got.cam_positive.max() > 0 or got.cam_negative.max() > 0
    model.train()  # reference_cam switched it to eval; the fused call must have restored train
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert act.active_hook_count(model) == 0


class _TupleOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _TupleNet(nn.Module):
    """A layer with a tuple output, and a layer that never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pair, self.unused = nn.Conv2d(3, 4, 3), _TupleOut(), nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.pair(self.conv(x))
        return self.head(a.mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("net", "layer", "cam_at", "match"),
    [
        ("vgg", "features.6", "classifier.0", "not a"),
        ("vgg", "classifier.0", "features.6", "not a"),
        ("vgg", "features.99", "features.6", "unknown layer"),
        ("tuple", "conv", "pair", "not a"),
        ("tuple", "unused", "conv", "did not run"),
        ("tuple", "conv", "unused", "did not run"),
    ],
)
def test_explain_image_layers_that_do_not_fit(
    net: str, layer: str, cam_at: str, match: str
) -> None:
    """A clear ActivationError; no hook left behind and every requires_grad flag restored."""
    model = make_model() if net == "vgg" else _TupleNet()
    with pytest.raises(act.ActivationError, match=match):
        gradcam.explain_image(model, inputs(1), layer, cam_at)
    assert act.active_hook_count(model) == 0
    assert all(p.requires_grad for p in model.parameters())
