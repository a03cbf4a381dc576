"""The heads' CPU dropout (bench.heads._dropout): F.dropout's distribution, reproducible, its gradient the mask."""
import math

import pytest
import torch

from bench.heads._dropout import dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drops_p_of_the_entries_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    n = 2_000_001  # odd: the last entry has half a 64-bit draw
    y = dropout(torch.ones(n), p, True)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)
    values = y.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p), rel=1e-6)
    assert abs(y.double().mean().item() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)  # unbiased


def test_masks_are_independent_of_position():
    torch.manual_seed(1)
    y = dropout(torch.ones(4000, 64), 0.5, True)
    even, odd = (y[:, 0::2] == 0).double().mean().item(), (y[:, 1::2] == 0).double().mean().item()
    assert abs(even - 0.5) < 0.01 and abs(odd - 0.5) < 0.01  # both halves of each 64-bit draw are used alike
    a, b = (y[:, 0::2] == 0).double().flatten(), (y[:, 1::2] == 0).double().flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.02


def test_seeded_reproducible_and_different_per_call():
    x = torch.randn(64, 48, 128)
    torch.manual_seed(3)
    a, b = dropout(x, 0.1, True), dropout(x, 0.1, True)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.1, True))
    assert not torch.equal(a, b)


def test_gradient_is_the_scaled_mask_and_eval_is_identity():
    x = torch.randn(7, 9, requires_grad=True)
    y = dropout(x, 0.3, True)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad, kept.float() / 0.7)
    assert torch.allclose(y.detach()[kept], x.detach()[kept] / 0.7)
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        dropout(x, 1.0, True)


def test_half_precision_keeps_its_dtype():
    y = dropout(torch.ones(1000, dtype=torch.bfloat16), 0.25, True)
    assert y.dtype == torch.bfloat16 and 150 < (y == 0).sum().item() < 350
