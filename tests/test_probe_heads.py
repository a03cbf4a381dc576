"""The heads of frozen-feature probing (simpool, lseplus, prr, ep, vjepa) and the probing readout (also gap(bn=True)),
each against a direct computation of its definition with plain torch ops on the head's own parameters.

Float64 throughout, so that a mismatch is a different computation, not rounding. The BatchNorm readout is checked
in eval mode against running statistics set by the test: ``(pooled - mean) / sqrt(var + eps) @ W^T + b``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.heads import create_head
from bench.heads._readout import BN_EPS

C, N, B, H, W = 16, 5, 3, 3, 4
L = H * W
PROBE_SPECS = ["simpool", "simpool(gamma=2.0, heads=4)", "lseplus", "prr", "prr(bn=False, heads=1)", "ep",
               "ep(queries=1)", "ep(bn=False, queries=16)", "vjepa", "vjepa(bn=False)", "vjepa(depth=2)",
               "gap(bn=True)"]


def _head(spec: str, seed: int = 0):
    """The head in eval mode, float64, with non-trivial running statistics in its BatchNorm (where it has one)."""
    torch.manual_seed(seed)
    head = create_head(spec, C, N).double().eval()
    if isinstance(head.norm, torch.nn.BatchNorm1d):
        head.norm.running_mean.copy_(torch.randn(C, dtype=torch.float64))
        head.norm.running_var.copy_(torch.rand(C, dtype=torch.float64) + 0.5)
    return head


def _inputs(seed: int = 1):
    """A map (B, C, H, W) and the same features as tokens (B, L, C)."""
    torch.manual_seed(seed)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    return x, x.flatten(2).transpose(1, 2).contiguous()


def _readout(head, pooled: torch.Tensor) -> torch.Tensor:
    """BatchNorm without affine in eval mode (running statistics), then the linear layer, written out."""
    if isinstance(head.norm, torch.nn.BatchNorm1d):
        pooled = (pooled - head.norm.running_mean) / torch.sqrt(head.norm.running_var + BN_EPS)
    return pooled @ head.fc.weight.T + head.fc.bias  # (B, N)


def _softmax(s: torch.Tensor, dim: int) -> torch.Tensor:
    e = torch.exp(s - s.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


def _check(head, pooled_direct, x):
    with torch.no_grad():
        out = head(x)
    torch.testing.assert_close(out, _readout(head, pooled_direct), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------------- readout ---

def test_readout_is_batchnorm_without_affine_then_linear():
    head = _head("gap(bn=True)")
    assert isinstance(head.norm, torch.nn.BatchNorm1d) and not head.norm.affine and head.norm.eps == BN_EPS
    assert not list(head.norm.parameters())  # no learnable scale or shift
    x, tokens = _inputs()
    for features in (x, tokens):
        _check(head, tokens.mean(1), features)


def test_readout_in_training_uses_batch_statistics_and_updates_the_running_ones():
    head = _head("ep").train()
    x, tokens = _inputs()
    captured = {}
    head.norm.register_forward_hook(lambda m, i, o: captured.update(pooled=i[0]))  # returns None: output kept
    before = head.norm.running_mean.clone()
    with torch.no_grad():
        out = head(x)
    pooled = captured["pooled"]
    normed = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + BN_EPS)
    torch.testing.assert_close(out, normed @ head.fc.weight.T + head.fc.bias, rtol=1e-10, atol=1e-10)
    assert not torch.equal(head.norm.running_mean, before)


def test_gap_bn_option_keeps_gap_as_it_was():
    torch.manual_seed(0)
    plain = create_head("gap", C, N)
    torch.manual_seed(0)
    off = create_head("gap(bn=False)", C, N)
    assert off.spec == plain.spec == "gap"  # the default is dropped from the label
    assert set(plain.state_dict()) == {"fc.weight", "fc.bias"}  # checkpoints of gap load as before
    assert isinstance(plain.norm, torch.nn.Identity)
    x = torch.randn(2, C, H, W)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), off(x), rtol=0, atol=0)
    assert create_head("gap(bn=True)", C, N).spec == "gap(bn=True)"


@pytest.mark.parametrize("spec", ["simpool", "lseplus", "prr", "ep", "vjepa"])
def test_probing_heads_default_to_the_batchnorm_readout(spec):
    assert isinstance(create_head(spec, C, N).norm, torch.nn.BatchNorm1d)
    assert isinstance(create_head(f"{spec}(bn=False)", C, N).norm, torch.nn.Identity)


# ---------------------------------------------------------------------------------- each head's definition ---

@pytest.mark.parametrize("spec", ["ep", "ep(queries=1)", "ep(bn=False, queries=16)"])
def test_ep_is_multi_query_attention_over_raw_tokens(spec):
    """y_j = softmax_L(q_j . x_i / sqrt(C)) (X W_v^T), concatenated over the queries j."""
    head = _head(spec)
    Q = head.num_queries
    x, tokens = _inputs()
    assert head.queries.shape == (Q, C) and head.value.weight.shape == (C // Q, C) and head.value.bias is None
    values = tokens @ head.value.weight.T  # (B, L, C/Q)
    parts = []
    for j in range(Q):
        a = _softmax((tokens @ head.queries[j]) / math.sqrt(C), dim=1)  # (B, L)
        parts.append((a.unsqueeze(-1) * values).sum(1))  # (B, C/Q)
    pooled = torch.cat(parts, 1)  # (B, C)
    for features in (x, tokens):
        _check(head, pooled, features)
    assert head.query_parameters() == {"queries": head.queries}


def _layer_norm(t, weight, bias, eps):
    mu = t.mean(-1, keepdim=True)
    var = ((t - mu) ** 2).mean(-1, keepdim=True)
    out = (t - mu) / torch.sqrt(var + eps) * weight
    return out if bias is None else out + bias


@pytest.mark.parametrize("spec", ["simpool", "simpool(gamma=2.0, heads=4)", "simpool(bn=False, gamma=1.5)"])
def test_simpool_is_gap_query_attention_over_normed_tokens(spec):
    """SimPool: q = W_q mean(X), k = W_k LN(X), v = LN(X) per head; softmax(q.k / sqrt(d)) pools v (or v^gamma, on
    values shifted to be positive, then ^(1/gamma))."""
    head = _head(spec)
    pool, h = head.pool, head.heads
    d = C // h
    assert pool.norm.bias is None and pool.q.bias is None and pool.k.bias is None
    x, tokens = _inputs()
    xn = _layer_norm(tokens, pool.norm.weight, None, pool.norm.eps)  # (B, L, C)
    q = tokens.mean(1) @ pool.q.weight.T  # (B, C)
    k = xn @ pool.k.weight.T  # (B, L, C)
    parts = []
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        a = _softmax((k[..., sl] * q[:, None, sl]).sum(-1) / math.sqrt(d), dim=1)  # (B, L)
        v = xn[..., sl]  # (B, L, d)
        if head.gamma is None:
            parts.append((a.unsqueeze(-1) * v).sum(1))
        else:
            v = v - v.amin(1, keepdim=True) + 1e-6
            parts.append(((a.unsqueeze(-1) * v ** head.gamma).sum(1)) ** (1 / head.gamma))
    pooled = torch.cat(parts, 1)  # (B, C)
    for features in (x, tokens):
        _check(head, pooled, features)


def test_simpool_equals_timm_simpool_on_tokens():
    """The map layer fed tokens as a (B, C, L, 1) map is timm's SimPool1d on the tokens."""
    from timm.layers import SimPool1d

    head = _head("simpool(gamma=2.0, heads=4)")
    ref = SimPool1d(C, num_heads=4, gamma=2.0, norm_layer=type(head.pool.norm)).double()
    ref.norm = head.pool.norm  # the same bias-free LayerNorm
    ref.load_state_dict(head.pool.state_dict())
    x, tokens = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(head(tokens), _readout(head, ref(tokens)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spec", ["lseplus", "lseplus(r=0.5, r_learnable=False)"])
def test_lseplus_is_log_mean_exp(spec):
    """(1/r) log(mean_i exp(r x_i)) per channel over the positions."""
    head = _head(spec)
    r = head.pool.r.item()
    assert isinstance(head.pool.r, torch.nn.Parameter) == ("r_learnable=False" not in spec)
    x, tokens = _inputs()
    pooled = torch.log(torch.exp(r * tokens).mean(1)) / r  # (B, C)
    for features in (x, tokens):
        _check(head, pooled, features)


def test_lseplus_sharpness_moves_between_mean_and_max():
    x, tokens = _inputs()
    soft = create_head("lseplus(r=1e-4)", C, N).double().pool
    hard = create_head("lseplus(r=1e4)", C, N).double().pool
    with torch.no_grad():
        torch.testing.assert_close(soft(x), tokens.mean(1), rtol=0, atol=1e-3)
        torch.testing.assert_close(hard(x), tokens.amax(1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("spec", ["prr", "prr(bn=False, heads=1)", 'prr(heads=4, pool="token")'])
def test_prr_is_parameter_free_self_attention_then_pooling(spec):
    """Per head, softmax(X_h X_h^T / sqrt(d)) X_h refines the tokens; then their mean (or the first token)."""
    head = _head(spec)
    h = head.heads
    d = C // h
    x, tokens = _inputs()
    parts = []
    for i in range(h):
        xh = tokens[..., i * d:(i + 1) * d]  # (B, L, d)
        a = _softmax(xh @ xh.transpose(1, 2) / math.sqrt(d), dim=-1)  # (B, L, L)
        parts.append(a @ xh)
    refined = torch.cat(parts, -1)  # (B, L, C)
    pooled = refined[:, 0] if head.pool_type == "token" else refined.mean(1)
    _check(head, pooled, tokens)
    if head.pool_type == "avg":
        _check(head, pooled, x)
    else:
        with pytest.raises(ValueError, match="class token"):
            head(x)
    assert sum(p.numel() for p in head.parameters()) == C * N + N  # the pooling has no parameters


def _vjepa_cross_block(head, t):
    """V-JEPA's cross-attention block on tokens t (B, L, C), written out."""
    Bt, Lt, _ = t.shape
    h = head.heads
    d = C // h
    query = head.query  # (1, C)
    kv = _layer_norm(t, head.norm1.weight, head.norm1.bias, 1e-6) @ head.kv.weight.T + head.kv.bias  # (B, L, 2C)
    k, v = kv[..., :C], kv[..., C:]
    q = query @ head.q.weight.T + head.q.bias  # (1, C)
    parts = []
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        a = _softmax((k[..., sl] * q[:, None, sl]).sum(-1) / math.sqrt(d), dim=1)  # (B, L)
        parts.append((a.unsqueeze(-1) * v[..., sl]).sum(1))  # (B, d)
    y = torch.cat(parts, 1) @ head.proj.weight.T + head.proj.bias  # (B, C)
    p = query + y
    hidden = F.gelu(_layer_norm(p, head.norm2.weight, head.norm2.bias, 1e-6) @ head.mlp.fc1.weight.T
                    + head.mlp.fc1.bias)
    fc2_bias = 0 if head.mlp.fc2.bias is None else head.mlp.fc2.bias
    return p + hidden @ head.mlp.fc2.weight.T + fc2_bias  # (B, C)


@pytest.mark.parametrize("spec", ["vjepa", "vjepa(bn=False)", "vjepa(heads=2, mlp_ratio=2.0)", "vjepa(depth=2)"])
def test_vjepa_is_a_query_cross_attention_block(spec):
    head = _head(spec)
    with torch.no_grad():  # non-zero biases and LayerNorm affines, so that each one's place is checked
        for name, p in head.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("norm1.weight") else 0.0))
    assert (head.mlp.fc2.bias is None) == isinstance(head.norm, torch.nn.BatchNorm1d)
    x, tokens = _inputs()
    t = tokens
    with torch.no_grad():
        for block in head.blocks:  # depth - 1 timm ViT blocks over the tokens first
            t = block(t)
    pooled = _vjepa_cross_block(head, t)
    for features in (x, tokens):
        _check(head, pooled, features)
    assert len(head.blocks) == head.depth - 1
    assert head.query_parameters() == {"query": head.query}


# ------------------------------------------------------------------------------------------- layouts, batch ---

@pytest.mark.parametrize("spec", PROBE_SPECS)
def test_map_and_its_tokens_give_the_same_logits_and_images_are_independent(spec):
    head = _head(spec)
    x, tokens = _inputs()
    with torch.no_grad():
        from_map, from_tokens = head(x), head(tokens)
        single = torch.cat([head(x[i:i + 1]) for i in range(B)])
    torch.testing.assert_close(from_map, from_tokens, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(from_map, single, rtol=1e-10, atol=1e-10)  # eval: no image sees another


@pytest.mark.parametrize("spec, macs", [
    # C=1280, N=80, 49 tokens, batch 1, written out per head
    ("ep", 49 * 1280 * 160 + 8 * 49 * 1280 + 8 * 49 * 160 + 1280 * 80),
    ("simpool", 1280 ** 2 + 49 * 1280 ** 2 + 2 * 49 * 1280 + 1280 * 80),
    ("lseplus", 1280 * 80),
    ("prr", 2 * 49 * 49 * 1280 + 1280 * 80),
    ("vjepa", 1280 ** 2 + 2 * 49 * 1280 ** 2 + 2 * 49 * 1280 + 1280 ** 2 + 2 * 1280 * 5120 + 1280 * 80),
])
def test_analytic_macs_at_a_probing_size(spec, macs):
    with torch.device("meta"):
        head = create_head(spec, 1280, 80)
    assert head.analytic_macs(tokens=49) == macs
    assert head.analytic_macs(tokens=49, batch=4) == 4 * macs - (3 * 1280 ** 2 if spec == "vjepa" else 0)
