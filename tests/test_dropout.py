"""The heads' CPU dropout (bench.heads._dropout): F.dropout's distribution, reproducible at any thread count, its
gradient the mask; attention with dropped weights; attention of shared queries broadcast to the batch."""
import math

import pytest
import torch
import torch.nn.functional as F

from bench.heads._dropout import attention, dropout


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


def test_mask_does_not_depend_on_the_thread_count():
    x = torch.ones(64, 48, 512)
    before = torch.get_num_threads()
    masks = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(4)
            masks.append(dropout(x, 0.1, True))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(masks[0], masks[1])


def test_attention_without_dropout_is_sdpa_and_with_it_drops_the_weights():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 6, 8), torch.randn(3, 4, 5, 8), torch.randn(3, 4, 5, 8)
    assert torch.equal(attention(q, k, v, 0.0), F.scaled_dot_product_attention(q, k, v))
    torch.manual_seed(7)
    got = attention(q, k, v, 0.25)
    torch.manual_seed(7)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    assert torch.allclose(got, dropout(w, 0.25, True) @ v, atol=1e-6)
    # in expectation the dropped weights are the weights: the mean over many draws approaches SDPA's output
    err = torch.stack([attention(q, k, v, 0.25) for _ in range(1000)]).mean(0) - F.scaled_dot_product_attention(q, k, v)
    assert err.abs().mean() < 0.02 and err.abs().max() < 0.15  # std of a mean of 1000 draws: about 0.02


def test_shared_queries_broadcast_to_the_batch_as_if_expanded():
    """Attention(batch=B) on batch-1 queries and keys computes the projections and weights once, and equals the
    same attention on the inputs expanded to the batch, mask for mask (the same draws, in the same order)."""
    from bench.heads._decoder import Attention

    attn = Attention(32, 4, dropout=0.1).train()
    t = torch.randn(1, 6, 32)
    torch.manual_seed(5)
    shared = attn(t, t, batch=8)
    torch.manual_seed(5)
    expanded = attn(t.expand(8, -1, -1), t.expand(8, -1, -1))
    assert shared.shape == (8, 6, 32) and torch.allclose(shared, expanded, atol=1e-6)
    assert not torch.allclose(shared[0], shared[1])  # the noise differs per image
    attn.eval()
    assert torch.allclose(attn(t, t, batch=8), attn(t, t).expand(8, -1, -1), atol=1e-6)
    with pytest.raises(ValueError, match="batch=8 broadcasts"):
        attn.train()(torch.randn(2, 6, 32), t, batch=8)


def test_keep_freed_memory_is_idempotent_and_changes_no_result():
    from bench.measure.alloc import keep_freed_memory

    torch.manual_seed(0)
    x = torch.randn(256, 256)
    before = x @ x
    first = keep_freed_memory()
    assert keep_freed_memory() == first  # once per process; a no-op where glibc is not the allocator
    assert torch.equal(x @ x, before)
