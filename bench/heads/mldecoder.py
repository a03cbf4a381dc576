"""ML-Decoder (Ridnik et al., WACV 2023): cross-attention of K queries on the spatial tokens, no self-attention,
and a group fully-connected layer that turns each query into g = ceil(N / K) logits.

Implemented from the facts in the paper and ``shared/reference/ml-decoder-facts.md``. Compared with the official
code, the group FC is one batched matmul instead of a Python loop over K, attention goes through
``scaled_dot_product_attention``, and the projection of fixed queries runs once per batch instead of per image.
``convert_official_state_dict`` maps official checkpoints (head alone or a whole model) onto this module.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._base import Head, batch_of_one, register_head, to_tokens
from ._decoder import Decoder

QUERY_KINDS = ("fixed", "learnable", "word")


def group_size(num_classes: int, groups: int) -> int:
    """g = ceil(N / K), computed as the reference does (``int(N / K + 0.999)``)."""
    return int(num_classes / groups + 0.999)


@register_head("mldecoder")
class MLDecoder(Head):
    """ML-Decoder: K queries cross-attend the tokens (no self-attention), a group FC gives N logits.

    Args:
        groups: K, the number of queries; K = min(groups, N). ``groups=N`` is full decoding (one query per class).
        embed: D, the decoder width.
        layers, heads, ffn, dropout: the decoder's depth, attention heads, FFN width and dropout.
        self_attn: put back the self-attention block the paper removed (for its ablation).
        queries: "fixed" (random N(0, 1), frozen: the paper's default), "learnable", or "word": zero-shot, the
            queries are class embeddings passed at call time, ``head(x, class_embeddings=E)`` with E (N', word_dim),
            projected to D by Linear + ReLU (Identity when word_dim == D); the output then has N' columns.
        word_dim: width of the class embeddings for ``queries="word"``.
        query_noise: word queries only, training only: Gaussian noise added to the class embeddings, relative to
            their size: each embedding gets noise of expected norm ``query_noise`` times the embeddings' mean
            norm (per coordinate std ``query_noise * mean_norm / sqrt(word_dim)``), so 0.1 perturbs a unit-norm
            sentence embedding by about a tenth of its length whatever its width (the paper's "additive noise"
            query augmentation; 0 disables it).
        random_queries: word queries only, training only: this many random class embeddings appended as extra
            negative queries (the paper's "random queries" augmentation); their logits are appended as extra
            columns, which the trainer scores as negatives.
    """

    def __init__(self, in_features: int, num_classes: int, groups: int = 100, embed: int = 768, layers: int = 1,
                 heads: int = 8, ffn: int = 2048, dropout: float = 0.1, self_attn: bool = False,
                 queries: str = "fixed", word_dim: int = 300, query_noise: float = 0.0, random_queries: int = 0):
        super().__init__(in_features, num_classes)
        if queries not in QUERY_KINDS:
            raise ValueError(f"unknown queries {queries!r}; valid: {', '.join(QUERY_KINDS)}")
        for name, v in (("groups", groups), ("embed", embed), ("layers", layers), ("heads", heads), ("ffn", ffn),
                        ("word_dim", word_dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(self_attn, bool):
            raise ValueError(f"self_attn must be True or False, got {self_attn!r}")
        if (query_noise or random_queries) and queries != "word":
            raise ValueError("query_noise and random_queries apply to queries='word' only")
        self.queries_kind = queries
        self.embed = embed
        self.word_dim = word_dim
        self.query_noise = float(query_noise)
        self.random_queries = int(random_queries)
        self.requested_groups = groups
        self.groups = min(groups, num_classes)  # K
        self.group_size = group_size(num_classes, self.groups)  # g

        self.input_proj = nn.Linear(in_features, embed)
        if queries == "word":
            self.queries = None
            self.word_proj = nn.Identity() if word_dim == embed else nn.Linear(word_dim, embed)
            self.pool_weight = nn.Parameter(torch.empty(embed, 1))  # shared by every class
            self.pool_bias = nn.Parameter(torch.zeros(1))
        else:
            self.queries = nn.Parameter(torch.randn(self.groups, embed), requires_grad=queries == "learnable")
            self.word_proj = None
            self.pool_weight = nn.Parameter(torch.empty(self.groups, embed, self.group_size))  # (K, D, g)
            self.pool_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.pool_weight)
        self.decoder = Decoder(layers, embed, heads, ffn, dropout, self_attn)

    def forward(self, x: torch.Tensor, class_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        mem = F.relu(self.input_proj(to_tokens(x)), inplace=True)  # (B, L, D)
        B = mem.shape[0]
        if self.queries_kind == "word":
            if class_embeddings is None:
                raise ValueError("mldecoder(queries='word') needs class_embeddings=(N', word_dim) at call time")
            E = class_embeddings.to(mem.dtype)
            if self.training and self.query_noise > 0:  # noise scaled to the embeddings' norm
                scale = E.norm(dim=1).mean() / E.shape[1] ** 0.5
                E = E + (self.query_noise * scale) * torch.randn_like(E)
            if self.training and self.random_queries > 0:
                E = torch.cat([E, torch.randn(self.random_queries, E.shape[1], device=E.device, dtype=E.dtype)
                               * E.std()], 0)
            q = self.word_proj(E)
            q = F.relu(q) if isinstance(self.word_proj, nn.Linear) else q  # (N', D)
            h = self.decoder(batch_of_one(q), mem)  # (B, N', D)
            return (h @ self.pool_weight).squeeze(-1) + self.pool_bias  # (B, N')
        h = self.decoder(batch_of_one(self.queries), mem)  # (B, K, D)
        out = torch.bmm(h.transpose(0, 1), self.pool_weight)  # (K, B, g): the K group FCs in one batched matmul
        out = out.transpose(0, 1).reshape(B, self.groups * self.group_size)[:, : self.num_classes]  # (B, N)
        return out + self.pool_bias

    def query_parameters(self) -> Dict[str, nn.Parameter]:
        return {} if self.queries is None else {"queries": self.queries}

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C = in_features or self.in_features
        N = num_classes or self.num_classes
        D, B, L = self.embed, batch, tokens
        if self.queries_kind == "word":
            K, g = N, 1
            extra = N * self.word_dim * D if isinstance(self.word_proj, nn.Linear) else 0
        else:
            K = min(self.requested_groups, N)
            g, extra = group_size(N, K), 0
        return B * L * C * D + extra + self.decoder.macs(B, K, L) + B * K * D * g


_RENAMES = [
    (r"^decoder\.embed_standart\.", "input_proj."),
    (r"^decoder\.query_embed\.weight$", "queries"),
    (r"^decoder\.duplicate_pooling$", "pool_weight"),
    (r"^decoder\.duplicate_pooling_bias$", "pool_bias"),
    (r"^decoder\.layers\.(\d+)\.multihead_attn\.", r"decoder.layers.\1.cross_attn."),
    (r"^decoder\.layers\.(\d+)\.", r"decoder.layers.\1."),
    (r"^wordvec_proj\.", "word_proj."),
]
OFFICIAL_PREFIXES = ("module.", "head.", "fc.")


def is_official_head_key(key: str) -> bool:
    return key.startswith(("decoder.embed_standart.", "decoder.query_embed.", "decoder.layers.",
                           "decoder.duplicate_pooling", "wordvec_proj."))


def convert_official_state_dict(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official ML-Decoder keys -> this project's, for ``create_head("mldecoder(...)", C, N).load_state_dict``.

    Takes the head's own state dict or a whole-model one (the head under ``head.`` for TResNet or ``fc.`` for
    ResNet, optionally under ``module.``); keys that are not the head's are left out. Raises ValueError when no
    ML-Decoder key is found.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key
        if k.startswith("module."):
            k = k[len("module."):]
        for prefix in ("head.", "fc."):
            if k.startswith(prefix) and is_official_head_key(k[len(prefix):]):
                k = k[len(prefix):]
                break
        if not is_official_head_key(k):
            continue
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, k)
            if new != k:
                k = new
                break
        out[k] = value
    if not out:
        raise ValueError("no ML-Decoder keys found (expected e.g. 'decoder.embed_standart.weight', optionally "
                         "under 'head.' or 'fc.'); first keys: " + ", ".join(list(sd)[:5]))
    return out
