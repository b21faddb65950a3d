"""The emotion-conditioned music generator, a PyTorch model.

Modules: ``tokenizer`` (vocabulary: MidiTok REMI notes + conditioning tokens),
``dataset`` (POP909/VGMIDI → per-bar token streams with derived attributes),
``model`` (the Transformer with its KV cache), ``train`` (``python -m
models.train``), ``checkpoint`` (the checkpoint file and its errors),
``generate`` (:class:`models.generate.ModelPartGenerator`, the engine's
``"model"`` part generator). See ``models/MODEL_CARD.md``.
"""
