"""A tiny configuration trains on a few real files: its loss falls, the run
resumes, and the exported checkpoint loads and generates."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from adaptive.generator import BarRequest
from adaptive.harmony import Chord, Key
from models.checkpoint import load_checkpoint
from models.dataset import all_files, build_streams, default_data_dir
from models.generate import ModelPartGenerator
from models.tokenizer import Vocabulary
from models.model import RELATIVE_PITCH_COLUMNS, ModelConfig, MusicTransformer
from models.train import TrainConfig, WindowSampler, learning_rate, train, warm_start

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(not (DATA / "pop909" / "001").is_dir(), reason=f"no training data at {DATA}")

TINY = TrainConfig(steps=40, batch_size=8, block_size=128, n_layer=1, n_head=2, n_embd=48, dropout=0.0,
                   learning_rate=3e-3, warmup_steps=5, eval_every=10, eval_batches=2, checkpoint_every=20)


@pytest.fixture(scope="module")
def few_streams():
    vocab = Vocabulary.build()
    files = all_files(DATA, limit_pop909=3)
    on_grid = ("Gobis Valley", "Mad Monster Mansion", "Motzhand")  # phrases written to their MIDI grid
    files = [f for f in files if f[0] == "pop909"] + [f for f in files if f[0] == "vgmidi"
                                                      and any(name in f[1] for name in on_grid)]
    heldout = {"pop909": [files[2][1]], "vgmidi": [files[-1][1]]}
    return vocab, build_streams(DATA, files, vocab, progress=False), heldout


def test_tiny_model_loss_falls_and_export_generates(tmp_path, few_streams):
    torch.set_num_threads(1)
    vocab, streams, heldout = few_streams
    out = tmp_path / "tiny.pt"
    history = train(TINY, streams, heldout, vocab, tmp_path / "run", out, progress=False)
    assert history["step"] == [10, 20, 30, 40]
    assert history["train_loss"][-1] < history["train_loss"][0] - 0.5
    assert history["heldout_loss"][-1] < history["heldout_loss"][0]
    model, payload = load_checkpoint(out)
    assert payload["heldout"] == heldout and payload["train_config"]["n_embd"] == 48
    part = ModelPartGenerator(out).generate_bar(BarRequest(0, Key.parse("G major"), Chord.parse("G"), 4, 100.0,
                                                           0.5, 0.5, "melody", 1))
    assert len(part) > 0 and set((part.pitch % 12).tolist()) <= set(Key.parse("G major").scale_pitch_classes())


def test_run_resumes_where_it_stopped(tmp_path, few_streams):
    torch.set_num_threads(1)
    vocab, streams, heldout = few_streams
    half = dataclasses.replace(TINY, steps=20)
    train(half, streams, heldout, vocab, tmp_path / "run", None, progress=False)
    history = train(TINY, streams, heldout, vocab, tmp_path / "run", None, resume=True, progress=False)
    assert history["step"] == [10, 20, 30, 40]


def test_windows_start_at_a_bar_and_train_only_on_notes_and_bar_ends(few_streams):
    import random

    vocab, streams, _ = few_streams
    sampler = WindowSampler(streams, vocab, 128, transpose=True, emotion_dropout=0.5, texture_dropout=0.5,
                            style_dropout=0.25)
    labelled = dropped = unknown_style = 0
    for _ in range(60):
        seq, mask = sampler.sample(random.Random(_), {"vgmidi": 1.0})  # labelled VGMIDI phrases only
        tokens = [vocab.tokens[i] for i in seq]
        assert tokens[0] == "BOS_None" and tokens[1].startswith("Role_") and tokens[3] == "Bar_None"
        assert tokens[2] in ("Style_game", "Style_unknown")  # VGMIDI is game music, or its style dropped
        unknown_style += tokens[2] == "Style_unknown"
        trained = {vocab.tokens[i].split("_")[0] for i, m in zip(seq[1:], mask) if m}
        assert trained <= {"Bar", "Position", "Pitch", "Velocity", "Duration"}
        emotion = {t for t in tokens if t.startswith(("Valence_", "Arousal_"))}
        if emotion <= {"Valence_unknown", "Arousal_unknown"}:
            dropped += 1  # the whole window dropped its emotion (for classifier-free guidance)
        else:
            labelled += 1
            assert "Valence_unknown" not in emotion and "Arousal_unknown" not in emotion
    assert 15 < dropped < 45 and labelled > 15
    assert 5 <= unknown_style <= 28


def test_warm_start_keeps_learned_rows_when_tokens_are_appended(tmp_path, few_streams):
    torch.set_num_threads(1)
    vocab, streams, heldout = few_streams
    short = dataclasses.replace(TINY, steps=10)
    train(short, streams, heldout, vocab, tmp_path / "old", None, progress=False)
    old = torch.load(tmp_path / "old" / "run.pt", weights_only=False)["model"]
    # An earlier run whose vocabulary lacked the last five tokens (as format 2 lacked the Style tokens).
    old = {k: (v[:-5] if k in ("token_embedding.weight", "head.weight") else v) for k, v in old.items()}
    torch.save({"model": old}, tmp_path / "older.pt")
    config = ModelConfig(vocab_size=len(vocab), block_size=short.block_size, n_layer=short.n_layer,
                         n_head=short.n_head, n_embd=short.n_embd, dropout=0.0)
    model = MusicTransformer(config)
    fresh_rows = model.token_embedding.weight[-5:].detach().clone()
    warm_start(model, tmp_path / "older.pt", vocab)
    assert torch.equal(model.token_embedding.weight[:-5], old["token_embedding.weight"])
    assert torch.equal(model.token_embedding.weight[-5:], fresh_rows)
    assert torch.equal(model.head.weight, model.token_embedding.weight)  # still tied
    with pytest.raises(ValueError, match="shape"):
        small = MusicTransformer(dataclasses.replace(config, n_embd=short.n_embd * 2, n_head=short.n_head))
        warm_start(small, tmp_path / "older.pt", vocab)


def test_learning_rate_warms_up_then_decays():
    rates = [learning_rate(s, TINY) for s in range(TINY.steps)]
    assert rates[0] < rates[4] and rates[5] > rates[-1] >= TINY.min_learning_rate


def test_a_relative_pitch_head_starts_as_the_model_it_warm_starts_from_then_learns(tmp_path, few_streams):
    """``--relative-pitch``: warm-started from a model without the head, the
    new model first gives the same logits (the head starts at zero); after
    training the head scores pitches, and the exported checkpoint generates."""
    torch.set_num_threads(1)
    vocab, streams, heldout = few_streams
    short = dataclasses.replace(TINY, steps=10)
    train(short, streams, heldout, vocab, tmp_path / "old", None, progress=False)
    relative = dataclasses.replace(TINY, steps=20, relative_pitch=True)
    config = ModelConfig(vocab_size=len(vocab), block_size=short.block_size, n_layer=short.n_layer,
                         n_head=short.n_head, n_embd=short.n_embd, dropout=0.0)
    old, new = MusicTransformer(config), MusicTransformer(dataclasses.replace(
        config, relative_pitch_columns=RELATIVE_PITCH_COLUMNS)).use_vocabulary(vocab)
    warm_start(old, tmp_path / "old" / "run.pt", vocab)
    warm_start(new, tmp_path / "old" / "run.pt", vocab)
    ids = torch.tensor([[vocab.id(t) for t in ("BOS_None", "Key_7_major", "Position_0", "Pitch_67", "Velocity_79",
                                               "Duration_1.0.4", "Position_4")]])
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(ids), old.eval()(ids))
    out = tmp_path / "relative.pt"
    train(relative, streams, heldout, vocab, tmp_path / "new", out, progress=False,
          init_from=tmp_path / "old" / "run.pt")
    model, _ = load_checkpoint(out)
    assert model.config.relative_pitch_columns == RELATIVE_PITCH_COLUMNS
    assert float(model.relative_head.weight.detach().abs().max()) > 0.01  # it learned something
    part = ModelPartGenerator(out).generate_bar(BarRequest(0, Key.parse("G major"), Chord.parse("G"), 4, 100.0,
                                                           0.5, 0.5, "melody", 1))
    assert len(part) > 0 and set((part.pitch % 12).tolist()) <= set(Key.parse("G major").scale_pitch_classes())
