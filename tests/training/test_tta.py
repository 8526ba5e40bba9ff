"""Test-time augmentation: flip invariance, weighting, shifts, modes."""

import pytest
import torch
from torch import nn

from cnnbench.errors import UserError
from cnnbench.training.tta import TTA_MODES, TTA_VIEWS, predict_logits, shift


class FlipInvariant(nn.Module):
    """Averages x and its mirror image before a linear head: invariant to horizontal flips."""

    def __init__(self, channels=3, size=8, num_classes=5):
        super().__init__()
        self.head = nn.Linear(channels * size * size, num_classes)

    def forward(self, x):
        x = 0.5 * (x + x.flip(-1))
        return self.head(x.flatten(1))


class Recorder(nn.Module):
    """Returns a fixed logit per call and records the inputs it saw."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.full((x.shape[0], 2), float(len(self.seen)))


def test_mirror_of_flip_invariant_model_equals_plain():
    torch.manual_seed(0)
    model = FlipInvariant().eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.inference_mode():
        plain = predict_logits(model, x, "none")
        mirror = predict_logits(model, x, "mirror")
    assert plain.shape == mirror.shape == (4, 5)
    assert torch.allclose(mirror, plain, atol=1e-6)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_shapes_and_number_of_views(mode):
    model = Recorder()
    x = torch.randn(3, 1, 6, 7)
    out = predict_logits(model, x, mode)
    assert out.shape == (3, 2)
    assert len(model.seen) == TTA_VIEWS[mode]
    assert all(v.shape == x.shape for v in model.seen)


@pytest.mark.parametrize("mode, views_of", [("mirror_translate", lambda v: [v, v.flip(-1)]),
                                             ("translate", lambda v: [v])])
def test_shifted_views_and_weights(mode, views_of):
    """The image, then moved up-left, then down-right (each mirrored too in mirror_translate),
    weighted 1/2, 1/4, 1/4."""
    model = Recorder()
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).reshape(2, 1, 4, 5)
    out = predict_logits(model, x, mode)
    # call k returns k: mirror_translate 0.5*mean(1,2) + 0.25*mean(3,4) + 0.25*mean(5,6),
    # translate 0.5*1 + 0.25*2 + 0.25*3
    expected = {"mirror_translate": 0.5 * 1.5 + 0.25 * 3.5 + 0.25 * 5.5,
                "translate": 0.5 * 1 + 0.25 * 2 + 0.25 * 3}[mode]
    assert torch.allclose(out, torch.full((2, 2), expected))
    views = [v for image in (x, shift(x, -1, -1), shift(x, 1, 1)) for v in views_of(image)]
    assert len(model.seen) == len(views) and all(map(torch.equal, model.seen, views))


def test_shift_moves_content_and_reflects_border():
    x = torch.arange(4 * 5, dtype=torch.float32).reshape(1, 1, 4, 5)
    down_right = shift(x, 1, 1)
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])  # content moved by one pixel
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])     # top row: reflection of row 1
    assert torch.equal(down_right[..., 1:, 0], x[..., :-1, 1])     # left column: reflection of column 1
    up_left = shift(x, -1, -1)
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(up_left[..., -1, :-1], x[..., -2, 1:])      # bottom row: reflection of row H-2
    assert torch.equal(shift(x, 0, 0), x)
    assert torch.equal(shift(x, 0, 2)[..., 2:], x[..., :-2])


def test_unknown_mode():
    with pytest.raises(UserError, match="mirror_translate"):
        predict_logits(FlipInvariant(), torch.randn(1, 3, 8, 8), "rotate")
