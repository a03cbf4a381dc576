"""The head contract (every registered head), spec strings, and parity with the official ML-Decoder.

The parity fixtures (official ML-Decoder outputs on five cases, with their README) are copied into
``tests/fixtures/mldecoder_parity/``, so a clone tests parity on its own; a missing fixture fails, never skips.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.heads import HEADS, create_head, head_options, list_heads
from bench.heads.mldecoder import convert_official_state_dict
from bench.spec import Spec, canonical, parse_spec, split_specs

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mldecoder_parity"
PARITY_CASES = ("full_groups", "group_decoding", "token_input", "many_classes", "zsl_word_queries")
C = 32  # in_features: small, and divisible by attnpool's 8 heads
WORD_DIM = 300  # mldecoder's default word_dim

# Every registered head with its defaults, plus the variants that take other code paths.
VARIANTS = ["mldecoder(groups=7)", "mldecoder(self_attn=True)", 'mldecoder(queries="learnable")',
            'mldecoder(queries="word")', "txdec(layers=2)", "csra(heads=4, lam=0.5)", "attnpool(mlp_ratio=0.0)",
            "q2l(self_attn=True)", "q2l(embed=16, ffn=64, input_proj=True)", "q2l(dec_layers=1, enc_layers=0)",
            "gap(bn=True)", "simpool(gamma=2.0, heads=4)", "simpool(bn=False)", "lseplus(r_learnable=False)",
            "prr(bn=False, heads=1)", "ep(queries=1)", "ep(bn=False, queries=32)", "vjepa(bn=False)",
            "vjepa(depth=2, mlp_ratio=1.0)"]
SPECS = list_heads() + VARIANTS


def _head_kwargs(head, n: int) -> dict:
    """Call-time arguments: word queries need class embeddings (one per class)."""
    if getattr(head, "queries_kind", None) == "word":
        return {"class_embeddings": torch.randn(n, WORD_DIM)}
    return {}


def _features(layout: str, batch: int) -> torch.Tensor:
    return torch.randn(batch, C, 3, 4) if layout == "map" else torch.randn(batch, 12, C)


# ----------------------------------------------------------------------------------------------- contract ---

def test_every_registered_head_is_in_the_contract():
    assert set(list_heads()) >= {"gap", "gmp", "avgmax", "catavgmax", "csra", "attnpool", "txdec", "mldecoder",
                                 "q2l", "simpool", "lseplus", "prr", "ep", "vjepa"}
    assert set(list_heads()) <= set(SPECS)


@pytest.mark.parametrize("layout", ["map", "tokens"])
@pytest.mark.parametrize("num_classes", [1, 10, 250])  # N=1; N=10 < K=100 (K clamps to N); 250 = 100*3 - 50
@pytest.mark.parametrize("spec", SPECS)
def test_eval_output_shape_and_finite(spec, num_classes, layout):
    torch.manual_seed(0)
    head = create_head(spec, C, num_classes).eval()
    for batch in (1, 3):
        x = _features(layout, batch)
        with torch.no_grad():
            out = head(x, **_head_kwargs(head, num_classes))
        assert out.shape == (batch, num_classes), spec
        assert torch.isfinite(out).all(), spec


@pytest.mark.parametrize("layout", ["map", "tokens"])
@pytest.mark.parametrize("spec", SPECS)
def test_gradients_reach_every_trainable_parameter(spec, layout):
    torch.manual_seed(0)
    n = 10
    head = create_head(spec, C, n).train()
    # batch 3: a BatchNorm (the probing heads' readout) over a batch of 2 maps every channel to about +-1 and passes
    # almost no gradient back
    x = _features(layout, 3).requires_grad_(True)
    out = head(x, **_head_kwargs(head, n))
    assert out.shape == (3, n) and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()  # random weights: no cancellation through the norms
    trainable = [(name, p) for name, p in head.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None, f"{spec}: no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"{spec}: non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"{spec}: zero gradient in {name}"
    for name, p in head.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"{spec}: frozen {name} received a gradient"
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fixed_queries_are_frozen_but_kept_in_the_state_dict():
    head = create_head("mldecoder", C, 20)
    assert head.queries.requires_grad is False
    assert "queries" in head.state_dict()
    assert "queries" not in {n for n, p in head.named_parameters() if p.requires_grad}
    before = head.queries.detach().clone()
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0)
    head.train()(torch.randn(2, C, 3, 3)).sum().backward()
    opt.step()
    assert torch.equal(head.queries, before)
    assert create_head('mldecoder(queries="learnable")', C, 20).queries.requires_grad is True


@pytest.mark.parametrize("spec, n, k, g", [
    ("mldecoder", 10, 10, 1),  # K > N: one query per class
    ("mldecoder", 250, 100, 3),  # N not divisible by K: 50 surplus outputs dropped
    ("mldecoder(groups=7)", 10, 7, 2),
    ("mldecoder(groups=8)", 50, 8, 7),  # the official int(N / K + 0.999)
    ("mldecoder", 1, 1, 1),
    ("txdec", 250, 250, 1),
])
def test_groups_and_group_size(spec, n, k, g):
    head = create_head(spec, C, n)
    assert (head.groups, head.group_size) == (k, g)
    assert head.queries.shape == (k, head.embed)
    assert head.pool_weight.shape == (k, head.embed, g)
    assert head.pool_bias.shape == (n,)


def test_group_fc_serves_contiguous_class_blocks():
    """logit[b, c] = h[b, c // g] . W[c // g, :, c % g] + bias[c], checked against that formula directly."""
    torch.manual_seed(0)
    head = create_head("mldecoder(groups=8, embed=64, dropout=0.0)", C, 50).eval()
    x = torch.randn(2, C, 3, 3)
    captured = {}
    head.decoder.register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    with torch.no_grad():
        out = head(x)
    h, W, b, g = captured["h"], head.pool_weight, head.pool_bias, head.group_size
    expected = torch.stack([h[:, c // g] @ W[c // g, :, c % g] + b[c] for c in range(50)], 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_word_queries_take_any_number_of_classes():
    torch.manual_seed(0)
    head = create_head('mldecoder(queries="word", embed=64)', C, 12).eval()
    x = torch.randn(2, C, 3, 3)
    with torch.no_grad():
        for n in (1, 5, 40):
            assert head(x, class_embeddings=torch.randn(n, WORD_DIM)).shape == (2, n)
        with pytest.raises(ValueError, match="class_embeddings"):
            head(x)


def test_word_queries_identity_projection_when_word_dim_is_embed():
    head = create_head('mldecoder(queries="word", embed=64, word_dim=64)', C, 5).eval()
    assert isinstance(head.word_proj, torch.nn.Identity)
    with torch.no_grad():
        assert head(torch.randn(1, C, 2, 2), class_embeddings=torch.randn(5, 64)).shape == (1, 5)


def test_fixed_query_projection_runs_once_per_batch():
    """Batched eval equals per-image eval: broadcasting the image-independent query side changes nothing."""
    torch.manual_seed(0)
    head = create_head("mldecoder(embed=64)", C, 20).eval()
    x = torch.randn(4, C, 3, 3)
    with torch.no_grad():
        batched = head(x)
        single = torch.cat([head(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("train", [False, True])
def test_forward_leaves_inputs_and_parameters_unchanged(spec, train):
    """Guards the in-place ops of the forward passes: they may only write into tensors they made."""
    torch.manual_seed(0)
    head = create_head(spec, C, 10).train(train)
    x = torch.randn(2, C, 3, 3)
    kwargs = _head_kwargs(head, 10)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    x0, kw0 = x.clone(), {k: v.clone() for k, v in kwargs.items()}
    with torch.no_grad():
        head(x, **kwargs)
    assert torch.equal(x, x0)
    for k in kwargs:
        assert torch.equal(kwargs[k], kw0[k])
    # A BatchNorm's running statistics are its own state, updated by a training forward by design.
    running = {f"{name}.{buf}" for name, m in head.named_modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for buf in ("running_mean", "running_var", "num_batches_tracked")} if train else set()
    for k, v in head.state_dict().items():
        if k not in running:
            assert torch.equal(v, before[k]), f"{spec}: forward changed {k}"


def test_head_rejects_bad_input_rank():
    head = create_head("mldecoder(embed=64)", C, 5)
    with pytest.raises(ValueError, match="feature map"):
        head(torch.randn(2, C))


@pytest.mark.parametrize("spec", SPECS)
def test_spec_label_is_canonical(spec):
    head = create_head(spec, C, 10)
    assert head.spec == canonical(spec)
    assert create_head(head.spec, C, 10).spec == head.spec  # the label builds the same head


@pytest.mark.parametrize("spec", SPECS)
def test_analytic_macs_is_a_positive_int(spec):
    head = create_head(spec, C, 10)
    macs = head.analytic_macs(tokens=12, batch=2)
    assert isinstance(macs, int) and macs > 0
    assert head.analytic_macs(tokens=12, batch=4) > macs


# --------------------------------------------------------------------------------------- bad specs / values ---

def test_unknown_head_names_the_valid_ones():
    with pytest.raises(ValueError) as e:
        create_head("mldecodr(groups=20)", C, 10)
    msg = str(e.value)
    assert "'mldecodr'" in msg and "did you mean 'mldecoder'" in msg
    for name in list_heads():
        assert name in msg


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ValueError) as e:
        create_head("mldecoder(grups=20)", C, 10)
    msg = str(e.value)
    assert "'grups'" in msg and "did you mean 'groups'" in msg
    for option in head_options("mldecoder"):
        assert option in msg


@pytest.mark.parametrize("spec, valid", [
    ('mldecoder(queries="random")', ["fixed", "learnable", "word"]),
    ("mldecoder(groups=0)", ["groups"]),
    ("mldecoder(groups=2.5)", ["groups"]),
    ("mldecoder(self_attn=1)", ["True", "False"]),  # no ints as booleans
    ("mldecoder(embed=100, heads=8)", ["divisible"]),
    ("mldecoder(dropout=1.5)", ["dropout"]),
    ("mldecoder(layers=0)", ["layers"]),
    ("mldecoder(query_noise=0.1)", ["word"]),
    ("gap(dropout=-0.1)", ["dropout"]),
    ("csra(heads=3)", ["1", "2", "4", "6", "8"]),
    ("attnpool(heads=5)", ["divisible"]),
    ("txdec(layers=0)", ["layers"]),
    ("csra(heads=True)", ["1", "2", "4"]),
    ("q2l(embed=16)", ["input_proj=True", "16", "32"]),
    ("q2l(heads=3)", ["divisible"]),
    ("q2l(dec_layers=0)", ["dec_layers"]),
    ("q2l(self_attn=1)", ["True", "False"]),
    ("q2l(dropout=1.0)", ["dropout"]),
    ("gap(bn=1)", ["bn", "True", "False"]),
    ("simpool(heads=5)", ["divisible"]),
    ("simpool(gamma=0)", ["gamma", "> 0"]),
    ("simpool(bn=None)", ["bn", "True", "False"]),
    ("lseplus(r=0.0)", ["r", "> 0"]),
    ("lseplus(r_learnable=1)", ["r_learnable", "True", "False"]),
    ("prr(heads=3)", ["divisible"]),
    ('prr(pool="max")', ["'avg'", "'token'"]),
    ("ep(queries=3)", ["divisible"]),
    ("ep(queries=0)", ["divisible"]),
    ("vjepa(heads=3)", ["divisible"]),
    ("vjepa(depth=0)", ["depth"]),
    ("vjepa(mlp_ratio=0.0)", ["mlp_ratio"]),
    ("vjepa(mlp_ratio=1e999)", ["mlp_ratio"]),
    ("vjepa(bn=1)", ["bn", "True", "False"]),
])
def test_bad_option_value_raises_value_error(spec, valid):
    with pytest.raises(ValueError) as e:
        create_head(spec, C, 10)
    for word in valid:
        assert word in str(e.value), (spec, str(e.value))


@pytest.mark.parametrize("n, c", [(0, C), (10, 0)])
def test_bad_sizes_raise_value_error(n, c):
    with pytest.raises(ValueError, match=">= 1"):
        create_head("gap", c, n)


def test_list_heads_glob_filter():
    assert list_heads() == sorted(list_heads())
    assert list_heads("*") == list_heads()
    assert list_heads("*dec*") == ["mldecoder", "txdec"]
    assert list_heads("gap") == ["gap"]
    assert list_heads("nothing*") == []


def test_duplicate_registration_fails():
    with pytest.raises(ValueError, match="duplicate head name 'gap'"):
        HEADS.register("gap")(object)


# ---------------------------------------------------------------------------------------------- spec strings ---

@pytest.mark.parametrize("text, spec", [
    ("gap", Spec("gap", {})),
    ("  gap  ", Spec("gap", {})),
    ("mldecoder()", Spec("mldecoder", {})),
    ("mldecoder(groups=20)", Spec("mldecoder", {"groups": 20})),
    ("mldecoder(queries=learnable)", Spec("mldecoder", {"queries": "learnable"})),  # bare word -> str
    ("mldecoder(queries='learnable')", Spec("mldecoder", {"queries": "learnable"})),
    ('mldecoder(queries="learnable", embed=512)', Spec("mldecoder", {"queries": "learnable", "embed": 512})),
    ("x(a=True, b=None, c=-1.5, d=[1, 2], e=1e-3)", Spec("x", {"a": True, "b": None, "c": -1.5, "d": [1, 2],
                                                            "e": 1e-3})),
    ('x(s="a,b(c)")', Spec("x", {"s": "a,b(c)"})),
])
def test_parse_spec(text, spec):
    assert parse_spec(text) == spec


@pytest.mark.parametrize("text, label", [
    ("gap", "gap"),
    ("mldecoder()", "mldecoder"),
    ("mldecoder( groups = 20 )", "mldecoder(groups=20)"),
    ("mldecoder(queries=learnable, embed=512)", 'mldecoder(queries="learnable", embed=512)'),
    ("mldecoder(queries='learnable')", 'mldecoder(queries="learnable")'),
    ("mldecoder(self_attn=True,dropout=0.0)", "mldecoder(self_attn=True, dropout=0.0)"),
    ('x(s="say \\"hi\\"")', 'x(s="say \\"hi\\"")'),
])
def test_canonical_form(text, label):
    assert canonical(text) == label
    assert canonical(label) == label  # a fixed point
    assert str(parse_spec(text)) == label


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("mldecoder(groups=20", "closing"),
    ("mldecoder(20)", "named"),
    ("mldecoder(groups=20, groups=30)", "twice"),
    ("mldecoder(**kw)", r"\*\*"),
    ("mldecoder(groups=__import__('os').getcwd())", "cannot read value"),  # literal_eval, never eval
    ("mldecoder(groups=1+)", "bad spec"),
    ("1abc", "bad spec"),
    ("ml decoder", "bad spec"),
    ("(groups=2)", "not a name"),
])
def test_parse_spec_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(text)


@pytest.mark.parametrize("text, parts", [
    ("gap", ["gap"]),
    ("gap,mldecoder", ["gap", "mldecoder"]),
    ("gap, mldecoder(groups=20, embed=512), txdec(layers=2)",
     ["gap", "mldecoder(groups=20, embed=512)", "txdec(layers=2)"]),
    ('a(s="p,q"),b', ['a(s="p,q")', "b"]),
    ("a(l=[1, 2]),b(m=(3, 4))", ["a(l=[1, 2])", "b(m=(3, 4))"]),
    ("gap,,mldecoder,", ["gap", "mldecoder"]),
    ("", []),
])
def test_split_specs(text, parts):
    assert split_specs(text) == parts


@pytest.mark.parametrize("text", ["a(b=1", "a(b=1))", 'a(s="x)'])
def test_split_specs_unbalanced(text):
    with pytest.raises(ValueError, match="unbalanced"):
        split_specs(text)


# ------------------------------------------------------------------------------------------ official parity ---

def _fixture_files():
    return [FIXTURES / f"{name}.pt" for name in PARITY_CASES]


def _fixture_spec(config: dict) -> str:
    """The spec string that builds the official head described by a fixture's config."""
    options = {"embed": config["decoder_embedding"]}
    if config.get("zsl", 0):
        options = {"queries": "word", **options}
    elif config["num_of_groups"] != -1:  # -1: the official default, K = min(100, N), which is ours too
        options = {"groups": config["num_of_groups"], **options}
    return "mldecoder(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"


def _load_fixture(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def fixtures():
    return {p.name: _load_fixture(p) for p in _fixture_files()}


def test_parity_fixture_set_is_complete(fixtures):
    # The README names five cases; each must be there (the test fails rather than skips without them).
    assert set(fixtures) == {f"{name}.pt" for name in PARITY_CASES}
    assert (FIXTURES / "README.md").is_file()


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.stem)
def test_parity_with_official_outputs(path):
    case = _load_fixture(path)
    cfg = case["config"]
    head = create_head(_fixture_spec(cfg), cfg["initial_num_features"], cfg["num_classes"]).eval()
    head.load_state_dict(convert_official_state_dict(case["state_dict"]), strict=True)
    kwargs = {"class_embeddings": case["wordvecs"]} if cfg.get("zsl", 0) else {}
    with torch.no_grad():
        out = head(case["input"], **kwargs)
    ref = case["output"]
    assert out.shape == ref.shape
    assert _rel_err(out, ref) < 1e-5, f"{path.name}: relative error {_rel_err(out, ref):.2e}"


@pytest.mark.parametrize("prefix", ["head.", "fc.", "module.head.", "module.fc."])
def test_whole_model_state_dict_converts_like_the_head_alone(fixtures, prefix):
    sd = fixtures["group_decoding.pt"]["state_dict"]
    backbone = {"body.conv1.0.weight": torch.randn(4, 3, 3, 3), "body.layer1.0.conv1.1.weight": torch.randn(4),
                "conv1.weight": torch.randn(4, 3, 7, 7), "layer4.1.bn2.bias": torch.randn(4),
                "head.fc.weight": torch.randn(2, 4)}
    whole = {**{("module." if prefix.startswith("module.") else "") + k: v for k, v in backbone.items()},
             **{prefix + k: v for k, v in sd.items()}}
    alone, converted = convert_official_state_dict(sd), convert_official_state_dict(whole)
    assert converted.keys() == alone.keys()
    for k in alone:
        assert converted[k] is alone[k]


def test_converted_keys_are_exactly_the_heads(fixtures):
    for name, case in fixtures.items():
        cfg = case["config"]
        head = create_head(_fixture_spec(cfg), cfg["initial_num_features"], cfg["num_classes"])
        assert convert_official_state_dict(case["state_dict"]).keys() == head.state_dict().keys(), name


def test_convert_without_official_keys_raises():
    with pytest.raises(ValueError, match="no ML-Decoder keys"):
        convert_official_state_dict({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})


def test_query_noise_is_relative_to_the_embeddings_norm():
    """query_noise=0.3 moves each class embedding by about 0.3 of the embeddings' mean norm, whatever their scale."""
    head = create_head('mldecoder(queries="word", word_dim=384, embed=32, ffn=64, heads=4, dropout=0.0, '
                       'query_noise=0.3)', 16, 5).train()
    seen = []
    head.word_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    x = torch.randn(2, 16, 3, 3)
    for scale in (1.0, 50.0):
        E = torch.nn.functional.normalize(torch.randn(200, 384), dim=1) * scale
        head(x, class_embeddings=E)
        ratio = float((seen[-1] - E).norm(dim=1).mean() / E.norm(dim=1).mean())
        assert ratio == pytest.approx(0.3, rel=0.05)
    head.eval()
    head(x, class_embeddings=E)
    assert torch.equal(seen[-1], E)  # no noise at inference
    assert head.query_parameters() == {}
    fixed = create_head("mldecoder(embed=32, ffn=64, heads=4)", 16, 5)
    assert list(fixed.query_parameters()) == ["queries"] and fixed.query_parameters()["queries"] is fixed.queries


# ------------------------------------------------------------------------------------------ pooling baselines ---

@pytest.mark.parametrize("name, pool", [
    ("gap", lambda t: t.mean(1)),
    ("gmp", lambda t: t.amax(1)),
    ("avgmax", lambda t: 0.5 * t.mean(1) + 0.5 * t.amax(1)),
    ("catavgmax", lambda t: torch.cat([t.mean(1), t.amax(1)], 1)),
])
def test_pooling_heads_pool_then_one_linear(name, pool):
    """logits = fc(pool over positions), the same on a map and on its tokens; catavgmax's fc takes 2C."""
    torch.manual_seed(0)
    head = create_head(name, C, 10).eval()
    x = torch.randn(3, C, 4, 5)
    tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    expected = head.fc(pool(tokens))
    with torch.no_grad():
        torch.testing.assert_close(head(x), expected)
        torch.testing.assert_close(head(tokens), expected)
    assert head.fc.in_features == (2 * C if name == "catavgmax" else C)
    assert head.analytic_macs(tokens=20, batch=3) == 3 * head.fc.in_features * 10


@pytest.mark.parametrize("name", ["gmp", "avgmax", "catavgmax"])
def test_pooling_heads_are_built_on_timm(name):
    from timm.layers import SelectAdaptivePool2d

    head = create_head(name, C, 10)
    assert isinstance(head.pool_map, SelectAdaptivePool2d) and isinstance(head.pool_tokens, SelectAdaptivePool2d)


# ----------------------------------------------------------------------------------------------- attnpool ---

def _timm_map_vit(num_classes=10, mlp_ratio=4.0):
    """A tiny timm ViT with the MAP head, random weights (no hub)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=C, depth=1, num_heads=4, mlp_ratio=mlp_ratio,
                             global_pool="map", class_token=False, num_classes=num_classes).eval()


def test_attnpool_is_timms_attention_pool_latent():
    from timm.layers import AttentionPoolLatent

    head = create_head("attnpool", C, 10)
    assert isinstance(head.pool, AttentionPoolLatent)
    assert head.pool.num_heads == 8 and head.hidden == 4 * C
    bare = create_head("attnpool(mlp_ratio=0.0)", C, 10)
    assert bare.pool.mlp is None and not any(k.startswith("pool.mlp") for k in bare.state_dict())


def test_attnpool_loads_the_head_of_a_timm_map_model():
    from bench.heads.attnpool import load_timm_attnpool

    vit = _timm_map_vit()
    head = load_timm_attnpool(create_head("attnpool(heads=4)", C, 10), vit).eval()
    with torch.no_grad():
        feats = vit.forward_features(torch.randn(2, 3, 32, 32))  # (B, 16, C): no class token
        torch.testing.assert_close(head(feats), vit.forward_head(feats), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(head(feats.transpose(1, 2).reshape(2, C, 4, 4)), vit.forward_head(feats),
                                   rtol=1e-5, atol=1e-6)  # the same tokens as a 4x4 map


def test_attnpool_load_rejects_a_model_without_a_map_head_or_other_shapes():
    from bench.heads.attnpool import load_timm_attnpool
    from timm.models.vision_transformer import VisionTransformer

    avg = VisionTransformer(img_size=32, patch_size=8, embed_dim=C, depth=1, num_heads=4, global_pool="avg",
                            num_classes=10)
    with pytest.raises(ValueError, match="no MAP head"):
        load_timm_attnpool(create_head("attnpool(heads=4)", C, 10), avg)
    with pytest.raises(ValueError, match="does not fit"):
        load_timm_attnpool(create_head("attnpool(heads=4)", C, 7), _timm_map_vit(num_classes=10))
    with pytest.raises(ValueError, match="does not fit"):
        load_timm_attnpool(create_head("attnpool(heads=4, mlp_ratio=2.0)", C, 10), _timm_map_vit())


# --------------------------------------------------------------------------------------------------- csra ---

def _csra_block(t, w, lam, T):
    """One CSRA block as the facts sheet describes it: a bias-free 1x1 conv, divided by each class's weight
    norm; mean over positions + lam * (max for T = inf, else the softmax(T * score)-weighted sum)."""
    score = torch.einsum("blc,nc->bln", t, w) / w.norm(dim=1)  # (B, L, N)
    att = score.amax(1) if T == float("inf") else (score * torch.softmax(T * score, 1)).sum(1)
    return score.mean(1) + lam * att


@pytest.mark.parametrize("heads, temperatures", [(1, [1]), (2, [1, "inf"]), (4, [1, 2, 4, "inf"]),
                                                 (6, [1, 2, 3, 4, 5, "inf"]), (8, [1, 2, 3, 4, 5, 6, 7, "inf"])])
def test_csra_temperatures_and_the_sum_over_heads(heads, temperatures):
    temperatures = [float(T) for T in temperatures]
    torch.manual_seed(0)
    head = create_head(f"csra(heads={heads}, lam=0.5)", C, 10).eval()
    assert list(head.temperatures) == temperatures
    assert [n for n, _ in head.named_parameters()] == ["weight"]  # one (h, N, C) weight, no bias
    x = torch.randn(2, C, 3, 4)
    t = x.flatten(2).transpose(1, 2)
    expected = sum(_csra_block(t, head.weight[i], 0.5, T) for i, T in enumerate(temperatures))
    with torch.no_grad():
        torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)


def test_csra_readme_settings_build_and_default_is_the_script_default():
    from bench.heads.csra import README_SETTINGS

    assert [(s, m) for _, s, m in README_SETTINGS] == [
        ("csra(heads=1, lam=0.1)", 94.7), ("csra(heads=4, lam=0.5)", 83.3), ("csra(heads=6, lam=0.4)", 85.6),
        ("csra(heads=1, lam=0.3)", 89.0)]
    assert head_options("csra") == {"heads": 1, "lam": 0.1}  # the official script's defaults (the VOC setting)
    for _, spec, _ in README_SETTINGS:
        head = create_head(spec, 2048, 80)
        h = len(head.temperatures)
        assert sum(p.numel() for p in head.parameters()) == h * 80 * 2048  # H*C*d (facts 2.4)
        assert head.analytic_macs(tokens=196) == h * 196 * 80 * 2048
    bound = 2048 ** -0.5  # torch's Conv2d default init, U(+-1/sqrt(d))
    w = create_head("csra", 2048, 80).weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


# ---------------------------------------------------------------------------------------------------- q2l ---

def _q2l_reference(head, x):
    """Query2Label's forward written out from the facts sheet (§1.2) with torch's sequence-first
    nn.MultiheadAttention on the head's own weights: post-norm, q = k = x + pos in the encoder, the decoder
    target starting at zeros, query_pos added to the cross-attention query in every layer, the positional code on
    the keys only, a final LayerNorm and the per-class readout. Eval mode (no dropout)."""
    from bench.heads.q2l import sine_position_encoding

    def mha(att, q, k, v):  # (L, B, D) sequence-first, as the official code calls it
        m = torch.nn.MultiheadAttention(att.embed, att.heads)
        m.load_state_dict({"in_proj_weight": att.in_proj_weight, "in_proj_bias": att.in_proj_bias,
                           "out_proj.weight": att.out_proj.weight, "out_proj.bias": att.out_proj.bias})
        return m.eval()(q, k, v, need_weights=False)[0]

    B, Cin, H, W = x.shape
    src = head.input_proj(x.flatten(2).transpose(1, 2)).transpose(0, 1)  # (HW, B, d)
    pos = sine_position_encoding(H, W, head.embed)[:, None]  # (HW, 1, d)
    for lay in head.transformer.encoder.layers:
        src = lay.norm1(src + mha(lay.self_attn, src + pos, src + pos, src))
        src = lay.norm2(src + lay.linear2(torch.relu(lay.linear1(src))))
    query_pos = head.query_embed.weight[:, None].expand(-1, B, -1)  # (K, B, d)
    tgt = torch.zeros_like(query_pos)
    for lay in head.transformer.decoder.layers:
        if lay.self_attn is not None:
            tgt = lay.norm1(tgt + mha(lay.self_attn, tgt + query_pos, tgt + query_pos, tgt))
        tgt = lay.norm2(tgt + mha(lay.multihead_attn, tgt + query_pos, src + pos, src))
        tgt = lay.norm3(tgt + lay.linear2(torch.relu(lay.linear1(tgt))))
    h = head.transformer.decoder.norm(tgt).transpose(0, 1)  # (B, K, d)
    return (head.fc.W * h).sum(-1) + head.fc.b  # (B, K)


@pytest.mark.parametrize("spec", ["q2l(ffn=64)", "q2l(ffn=64, self_attn=True)",
                                  "q2l(ffn=64, first_self_attn=True, self_attn=True)",
                                  "q2l(embed=16, ffn=64, input_proj=True, dec_layers=3, enc_layers=2)"])
def test_q2l_matches_the_facts_sheet_forward(spec):
    torch.manual_seed(0)
    head = create_head(spec, C, 10).eval()
    x = torch.randn(3, C, 3, 4)
    with torch.no_grad():
        out = head(x)
        torch.testing.assert_close(out, _q2l_reference(head, x), rtol=1e-4, atol=1e-5)
        single = torch.cat([head(x[i:i + 1]) for i in range(3)])  # the query side shared by the batch
        torch.testing.assert_close(out, single, rtol=1e-5, atol=1e-6)


def test_q2l_state_dict_keys_are_the_official_ones():
    keys = set(create_head("q2l(ffn=64)", C, 10).state_dict())
    attn = {f"self_attn.{k}" for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}
    lin = {f"{m}.{p}" for m in ("linear1", "linear2") for p in ("weight", "bias")}
    norms = lambda *ns: {f"norm{n}.{p}" for n in ns for p in ("weight", "bias")}  # noqa: E731
    enc = {f"transformer.encoder.layers.0.{k}" for k in attn | lin | norms(1, 2)}
    dec = {f"transformer.decoder.layers.{i}.{k}" for i in (0, 1)
           for k in {a.replace("self_attn", "multihead_attn") for a in attn} | lin | norms(2, 3)}
    expected = enc | dec | {"transformer.decoder.norm.weight", "transformer.decoder.norm.bias",
                            "query_embed.weight", "fc.W", "fc.b"}
    assert keys == expected  # no decoder self_attn / norm1 (removed), no positional buffer, no input_proj
    kept = set(create_head("q2l(ffn=64, self_attn=True)", C, 10).state_dict())
    assert {k for k in kept - keys} == {f"transformer.decoder.layers.1.{k}" for k in attn | norms(1)}
    proj = set(create_head("q2l(embed=16, input_proj=True)", C, 10).state_dict())
    assert {"input_proj.weight", "input_proj.bias"} <= proj


def test_q2l_initialisation_follows_the_official_code():
    torch.manual_seed(0)
    d, K = 64, 30
    head = create_head("q2l(ffn=256)", d, K)
    w = head.transformer.encoder.layers[0].self_attn.in_proj_weight  # xavier_uniform on the packed (3d, d)
    assert w.abs().max() <= (6 / (d + 3 * d)) ** 0.5 and w.abs().max() > 0.9 * (6 / (d + 3 * d)) ** 0.5
    lin = head.transformer.decoder.layers[1].linear1.weight  # xavier_uniform too (not torch's Linear default)
    assert lin.abs().max() > 0.9 * (6 / (d + 256)) ** 0.5
    assert torch.count_nonzero(head.transformer.encoder.layers[0].self_attn.in_proj_bias) == 0
    q = head.query_embed.weight  # N(0, 1)
    assert abs(q.std().item() - 1) < 0.1
    bound = d ** -0.5  # GroupWiseLinear: W and b uniform in [-1/sqrt(d), 1/sqrt(d)]
    assert head.fc.W.abs().max() <= bound and head.fc.b.abs().max() <= bound and head.fc.W.abs().max() > 0.9 * bound


def test_sine_position_encoding_follows_the_facts_sheet():
    import math

    from bench.heads.q2l import sine_position_encoding, token_grid

    H, W, d = 3, 4, 16
    pos = sine_position_encoding(H, W, d)
    assert pos.shape == (H * W, d)
    half = d // 2
    for h in range(H):
        for w in range(W):
            y = (h + 1) / (H + 1e-6) * 2 * math.pi
            xc = (w + 1) / (W + 1e-6) * 2 * math.pi
            for j in range(half):
                f = 10000 ** (2 * (j // 2) / half)
                trig = math.sin if j % 2 == 0 else math.cos
                assert pos[h * W + w, j].item() == pytest.approx(trig(y / f), abs=1e-6)
                assert pos[h * W + w, half + j].item() == pytest.approx(trig(xc / f), abs=1e-6)
    assert token_grid(16) == (4, 4) and token_grid(17) == (1, 17)
    with pytest.raises(ValueError, match="even"):
        sine_position_encoding(2, 2, 7)
