"""The numpy decoder: its cached, incremental logits equal the torch model's
full forward pass, for one row and for the two rows of guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inference import NumpyDecoder
from models.model import KVCache, ModelConfig, MusicTransformer


@pytest.fixture(scope="module")
def model() -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()


@pytest.mark.parametrize("rows", [1, 2])
def test_incremental_numpy_logits_equal_the_full_torch_forward(model, rows):
    ids = torch.randint(0, 97, (rows, 40), generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        full = model(ids).numpy()                                    # (rows, 40, V)
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache(rows)
    logits = decoder.forward(ids[:, :11].numpy(), cache)             # a bar header's chunk
    np.testing.assert_allclose(logits, full[:, 10], atol=2e-5)
    for t in range(11, 40):                                          # then one token at a time
        logits = decoder.forward(ids[:, t:t + 1].numpy(), cache)
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5)
    assert cache.length == 40


def test_torch_kv_cache_equals_the_full_forward(model):
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.config)
        chunk = model(ids[:, :12], cache)
        steps = [model(ids[:, t:t + 1], cache) for t in range(12, 30)]
    torch.testing.assert_close(chunk, full[:, :12], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 12:], atol=2e-5, rtol=1e-4)


def test_a_context_past_the_block_is_refused(model):
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache()
    decoder.forward(np.zeros((1, 60), np.int64), cache)
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        decoder.forward(np.zeros((1, 5), np.int64), cache)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba step", "numpy step"])
@pytest.mark.parametrize("rows", [1, 2])
def test_decoding_steps_equal_the_full_torch_forward(model, rows, compiled):
    """``step`` (one token per row, what generation calls for every token)
    gives the full forward pass's logits, compiled or in numpy, after a chunk
    fed by ``forward`` and across the whole block."""
    decoder = NumpyDecoder(model)
    if compiled and not decoder.compiled:
        pytest.skip("numba is not importable here")
    decoder.compiled = compiled
    ids = torch.randint(0, 97, (rows, 64), generator=torch.Generator().manual_seed(10 + rows))
    with torch.no_grad():
        full = model(ids).numpy()
    cache = decoder.new_cache(rows)
    decoder.forward(ids[:, :9].numpy(), cache)
    for t in range(9, 64):
        logits = decoder.step(ids[:, t].numpy(), cache)
        np.testing.assert_allclose(logits, full[:, t], atol=3e-5)
    assert cache.length == 64
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        decoder.step(ids[:, 0].numpy(), cache)


def test_warm_up_leaves_a_decoder_ready_and_its_caches_untouched(model):
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache(2)
    decoder.warm_up()
    assert cache.length == 0 and not cache.keys.any()
    assert decoder.step(np.array([1, 2]), cache).shape == (2, 97)
