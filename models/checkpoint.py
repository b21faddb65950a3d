"""The generator's checkpoint file: what it holds, how it is written, and how it
is read back with a clear error for anything wrong.

A checkpoint is a ``torch.save`` dict readable with ``weights_only=True``::

    format_version   int, FORMAT_VERSION
    model_config     dict of ModelConfig fields
    train_config     dict of the TrainConfig fields the run used
    vocabulary       list[str], token strings by id (models.tokenizer.Vocabulary)
    tokenizer        dict: the MidiTok REMI settings (repr) and header layout
    heldout          dict[source, list[str]]: held-out files, relative to the data directory
    history          dict of lists: step, train_loss, heldout_loss, seconds
    state_dict       model weights (float16 in the committed file)
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch

from adaptive.errors import AssetError
from models.model import ModelConfig, MusicTransformer
from models.tokenizer import HEADER_LENGTH, REMI_SETTINGS, Vocabulary

FORMAT_VERSION = 3
"""3: sequences open ``BOS Role Style`` (``Style_`` tokens appended to the vocabulary)."""
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "generator.pt"
"""The committed checkpoint (package data of ``models``)."""


class ModelError(AssetError):
    """A generator checkpoint that is missing, unreadable, or does not match this code."""


def tokenizer_description() -> dict:
    return {"remi_settings": repr(REMI_SETTINGS), "header_length": HEADER_LENGTH}


def save_checkpoint(path: Path, model: MusicTransformer, vocab: Vocabulary, train_config: dict,
                    heldout: dict, history: dict, half: bool = True) -> None:
    """Write the exportable checkpoint (fp16 weights when ``half``) atomically."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone()
             for k, v in model.state_dict().items()}
    state.pop("head.weight", None)  # tied to token_embedding.weight
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": asdict(model.config),
        "train_config": train_config,
        "vocabulary": list(vocab.tokens),
        "tokenizer": tokenizer_description(),
        "heldout": heldout,
        "history": history,
        "state_dict": state,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, vocab: Vocabulary | None = None) -> tuple[MusicTransformer, dict]:
    """Read a checkpoint and build its model (float32, eval mode).

    Returns:
        (model, payload) — payload is the checkpoint dict without ``state_dict``.
    Raises:
        ModelError: naming the file and the problem: missing, not a torch
            checkpoint (corrupt or truncated), wrong format version, a
            vocabulary or tokenizer different from this code's, or weights
            whose names/shapes do not match the model config.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: generator checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors differ by torch version
        raise ModelError(f"{path}: not a readable generator checkpoint (corrupt or truncated file?): "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ModelError(f"{path}: not a generator checkpoint (no format_version entry)")
    if payload["format_version"] != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format version {payload['format_version']!r}, "
                         f"this code reads version {FORMAT_VERSION}")
    missing = [k for k in ("model_config", "vocabulary", "tokenizer", "state_dict") if k not in payload]
    if missing:
        raise ModelError(f"{path}: checkpoint lacks {', '.join(missing)}")
    vocab = vocab or Vocabulary.build()
    stored = list(payload["vocabulary"])
    if stored != list(vocab.tokens):
        first = next((i for i, (a, b) in enumerate(zip(stored, vocab.tokens)) if a != b), min(len(stored), len(vocab)))
        raise ModelError(
            f"{path}: vocabulary mismatch: the checkpoint has {len(stored)} tokens, this code {len(vocab)}; "
            f"first difference at id {first} "
            f"({stored[first] if first < len(stored) else '(end)'!r} vs "
            f"{vocab.tokens[first] if first < len(vocab) else '(end)'!r})")
    if payload["tokenizer"] != tokenizer_description():
        raise ModelError(f"{path}: tokenizer settings differ from this code's: {payload['tokenizer']!r} "
                         f"vs {tokenizer_description()!r}")
    try:
        names = {f.name for f in fields(ModelConfig)}
        config = ModelConfig(**{k: v for k, v in payload["model_config"].items() if k in names})
        if config.vocab_size != len(vocab):
            raise ValueError(f"vocab_size {config.vocab_size} but the vocabulary has {len(vocab)} tokens")
        model = MusicTransformer(config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"{path}: invalid model_config {payload['model_config']!r}: {exc}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    state["head.weight"] = state.get("token_embedding.weight")
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state or state[name] is None:
            raise ModelError(f"{path}: weights lack {name!r} (shape {tuple(tensor.shape)})")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelError(f"{path}: weight {name!r} has shape {tuple(state[name].shape)}, "
                             f"the model config needs {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelError(f"{path}: unexpected weights {extra[:3]} for this model config")
    model.load_state_dict(state)
    model.use_vocabulary(vocab)
    model.prepare_for_decoding()
    return model, {k: v for k, v in payload.items() if k != "state_dict"}
