"""Train the generator: ``python -m models.train [--steps N] [--resume] ...``.

Mixes POP909 (chords, keys; unlabelled emotion) and VGMIDI (emotion labels).
VGMIDI is ~6 % of the bars, so windows are drawn from it with probability
``vgmidi_share`` (0.3) and, in the last ``final_fraction`` (15 %) of the steps,
``vgmidi_share_final`` (0.6): an oversampled mix that ends with a VGMIDI-heavy
fine-tuning phase. Every window is transposed by a random -5..+6 semitones
(pitches, key and chord tokens together; a window whose pitches would leave
the piano range is left untransposed).

Loss: next-token cross-entropy over note tokens and ``Bar`` (the model must
learn where a bar ends); the header's conditioning tokens are inputs only.
Held-out loss: fixed batches from the held-out files (see
:func:`models.dataset.heldout_split`, also written to ``models/heldout.json``).

The run keeps a resumable checkpoint (fp32 weights, optimizer, history) in
``<cache>/run/``; at the end (or at ``--max-minutes``) it exports the fp16
checkpoint (default ``models/generator.pt``), the loss plot
(``models/loss.png``) and ``models/heldout.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from models.dataset import (Stream, cached_streams, default_cache_dir, default_data_dir, held_out_files,
                            heldout_split)
from models.model import RELATIVE_PITCH_COLUMNS, ModelConfig, MusicTransformer
from models.tokenizer import HEADER_SLOTS, PHRASE_BARS, SOURCE_STYLE, Vocabulary, style_token

MODELS_DIR = Path(__file__).resolve().parent


@dataclass
class TrainConfig:
    """Settings of a training run (all recorded in the checkpoint)."""

    steps: int = 2400
    batch_size: int = 12
    block_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1
    learning_rate: float = 2e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.05
    vgmidi_share: float = 0.3
    vgmidi_share_final: float = 0.5
    final_fraction: float = 0.15
    folk_share: float = 0.3
    chorale_share: float = 0.08
    emotion_dropout: float = 0.3
    texture_dropout: float = 0.3
    style_dropout: float = 0.1
    transpose: bool = True
    eval_every: int = 100
    eval_batches: int = 6
    checkpoint_every: int = 100
    seed: int = 1234
    max_minutes: float = 0.0  # 0 = no limit; else stop, export and plot after this long
    relative_pitch: bool = False  # the relative-pitch head (models.model.RELATIVE_PITCH_COLUMNS)
    relative_learning_rate_factor: float = 10.0  # the new head's learning rate, times the others'


SOURCE_GROUPS = {"pop909": ("pop909",), "vgmidi": ("vgmidi", "vgmidi_piece"), "folk": ("essen", "oneills", "ryans"),
                 "chorales": ("chorales",)}
"""Sources drawn together: a window comes from group ``g`` with the share
:meth:`WindowSampler.shares` gives it, then from a stream of that group chosen
uniformly."""


class WindowSampler:
    """Random training windows: ``[BOS, Role, Style, bar header, notes, bar header, notes, ...]``.

    ``sample(rng)`` → (tokens (block_size + 1,) int64, loss mask (block_size,) bool).

    Conditioning dropout (for classifier-free guidance, Ho & Salimans 2022): in
    a share ``emotion_dropout`` of the windows every ``Valence`` and ``Arousal``
    token reads ``unknown``, and in a share ``texture_dropout`` every
    ``Density`` and ``MeanVelocity`` token does, so one model is both the
    conditional and the unconditional one. The ``Style`` token names the
    window's corpus (:data:`models.tokenizer.SOURCE_STYLE`) and reads
    ``unknown`` in a share ``style_dropout`` of the windows. Windows start at a random bar
    (from a phrase start, bar 0 of the period, half of the time)."""

    def __init__(self, streams: list[Stream], vocab: Vocabulary, block_size: int, transpose: bool,
                 emotion_dropout: float = 0.0, texture_dropout: float = 0.0, style_dropout: float = 0.0) -> None:
        self.by_group = {g: [st for st in streams if st.source in sources and len(st.bars)]
                         for g, sources in SOURCE_GROUPS.items()}
        self.vocab = vocab
        self.block_size = block_size
        self.transpose = transpose
        self.emotion_dropout = emotion_dropout
        self.texture_dropout = texture_dropout
        self.style_dropout = style_dropout
        self.style = {source: vocab.id(style_token(style)) for source, style in SOURCE_STYLE.items()}
        self.unknown_style = vocab.id(style_token("unknown"))
        self.bos = vocab.id("BOS_None")
        self.pad = vocab.id("PAD_None")
        kinds = vocab.kind
        # Targets we do not train on: conditioning inputs and padding.
        self.ignored_target = np.isin(kinds, ["Meter", "Phrase", "Key", "Valence", "Arousal", "Tempo", "Density",
                                              "MeanVelocity", "Chord", "Role", "Style", "PAD",
                                              "BOS"])
        self.unknown = {k: vocab.id(f"{k}_unknown") for k in ("Valence", "Arousal", "Density", "MeanVelocity")}
        self.slot = {k: HEADER_SLOTS.index(k) for k in ("Valence", "Arousal", "Density", "MeanVelocity")}

    def sample(self, rng: random.Random, shares: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        groups = [g for g in shares if self.by_group.get(g)]
        group = rng.choices(groups, weights=[shares[g] for g in groups])[0]
        stream = rng.choice(self.by_group[group])
        start = rng.randrange(len(stream.bars))
        if rng.random() < 0.5:
            start -= start % PHRASE_BARS
        headers = stream.headers.astype(np.int64)
        drop = [k for k, p in (("Valence", self.emotion_dropout), ("Arousal", self.emotion_dropout))
                if p > 0] if rng.random() < self.emotion_dropout else []
        if rng.random() < self.texture_dropout:
            drop += ["Density", "MeanVelocity"]
        if drop:
            headers = headers.copy()
            for k in drop:
                headers[:, self.slot[k]] = self.unknown[k]
        style = self.unknown_style if rng.random() < self.style_dropout else self.style[stream.source]
        pieces = [np.array([self.bos, self.vocab.id(f"Role_{stream.role}"), style], np.int64)]
        length = 3
        for b in range(start, len(stream.bars)):
            pieces += [headers[b], stream.bars[b].astype(np.int64)]
            length += len(headers[b]) + len(stream.bars[b])
            if length > self.block_size:
                break
        seq = np.concatenate(pieces)[: self.block_size + 1]
        if self.transpose:
            shifted = self.vocab.transpose(seq, rng.randint(-5, 6))
            seq = shifted if shifted is not None else seq
        if len(seq) < self.block_size + 1:
            seq = np.concatenate([seq, np.full(self.block_size + 1 - len(seq), self.pad, np.int64)])
        mask = ~self.ignored_target[seq[1:]]
        return seq, mask

    def batch(self, rng: random.Random, batch_size: int, shares: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (B, T), targets (B, T) with -100 where not trained on)."""
        seqs, masks = zip(*(self.sample(rng, shares) for _ in range(batch_size)))
        seq = torch.from_numpy(np.stack(seqs))                      # (B, T+1)
        targets = seq[:, 1:].clone()                                # (B, T)
        targets[~torch.from_numpy(np.stack(masks))] = -100
        return seq[:, :-1], targets


def shares(config: TrainConfig, final_phase: bool) -> dict[str, float]:
    """Share of the windows drawn from each of :data:`SOURCE_GROUPS`."""
    vgmidi = config.vgmidi_share_final if final_phase else config.vgmidi_share
    return {"vgmidi": vgmidi, "folk": config.folk_share, "chorales": config.chorale_share,
            "pop909": max(0.0, 1.0 - vgmidi - config.folk_share - config.chorale_share)}


def split_streams(streams: list[Stream], heldout: dict[str, list[str]]) -> tuple[list[Stream], list[Stream]]:
    held = held_out_files(heldout)
    return [s for s in streams if s.file not in held], [s for s in streams if s.file in held]


def learning_rate(step: int, config: TrainConfig, elapsed_seconds: float = 0.0) -> float:
    """Linear warm-up then cosine decay to ``min_learning_rate`` (as in nanoGPT).
    With a time limit, the decay follows whichever is further along: the steps
    or the time (so a run slowed by a busy machine still ends annealed)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    if config.max_minutes > 0:
        progress = max(progress, min(1.0, elapsed_seconds / (config.max_minutes * 60)))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (config.learning_rate - config.min_learning_rate)


def model_config_of(config: TrainConfig, dropout: float, vocab_size: int) -> ModelConfig:
    """The :class:`ModelConfig` a run of ``config`` trains over ``vocab_size`` tokens."""
    return ModelConfig(vocab_size=vocab_size, block_size=config.block_size,
                       n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, dropout=dropout,
                       relative_pitch_columns=RELATIVE_PITCH_COLUMNS if config.relative_pitch else 0)


def make_optimizer(model: MusicTransformer, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.95, as nanoGPT) with weight decay on matrices only;
    the relative-pitch head (new in a warm start, zero at first) learns
    ``relative_learning_rate_factor`` times faster than the rest, so that a
    short run on two cores teaches it something (its group's ``lr_factor``)."""
    relative = [p for n, p in model.named_parameters() if n.startswith("relative_head.")]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("relative_head.")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay, "lr_factor": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_factor": 1.0}]
    if relative:
        groups.append({"params": relative, "weight_decay": 0.0, "lr_factor": config.relative_learning_rate_factor})
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95))


def evaluate(model: MusicTransformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy (nats per trained token) over fixed batches."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for x, y in batches:
            logits = model(x)                                        # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((y != -100).sum())
    model.train()
    return total / max(1, count)


def plot_history(history: dict, path: Path) -> None:
    """Train and held-out loss against step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history["step"], history["train_loss"], label="train (mean of the last interval)")
    ax.plot(history["step"], history["heldout_loss"], label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("Generator training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: TrainConfig, streams: list[Stream], heldout: dict, vocab: Vocabulary, run_dir: Path,
          out: Path | None, resume: bool = False, progress: bool = True, plot: Path | None = None,
          init_from: Path | None = None) -> dict:
    """Run (or resume) training; returns the history. Writes ``run_dir/run.pt``
    every ``checkpoint_every`` steps and, when ``out`` is given, the exported
    checkpoint at the end. ``init_from`` (a run's ``run.pt`` or an exported
    checkpoint) warm-starts a new run from its weights (:func:`warm_start`);
    ``resume`` continues ``run_dir``'s own run instead and wins when both apply."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train_streams, held_streams = split_streams(streams, heldout)
    sampler = WindowSampler(train_streams, vocab, config.block_size, config.transpose, config.emotion_dropout,
                            config.texture_dropout, config.style_dropout)
    held_sampler = WindowSampler(held_streams, vocab, config.block_size, transpose=False)
    eval_rng = random.Random(config.seed + 1)
    eval_batches = [held_sampler.batch(eval_rng, config.batch_size, shares(config, False))
                    for _ in range(config.eval_batches)]

    model = MusicTransformer(model_config_of(config, config.dropout, len(vocab))).use_vocabulary(vocab)
    optimizer = make_optimizer(model, config)
    history = {"step": [], "train_loss": [], "heldout_loss": [], "seconds": []}
    step, elapsed = 0, 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    run_path = run_dir / "run.pt"
    if init_from is not None and not (resume and run_path.exists()):
        warm_start(model, init_from, vocab)
        print(f"warm start from {init_from}")
    if resume and run_path.exists():
        state = torch.load(run_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, step, elapsed = state["history"], state["step"], state["elapsed_seconds"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {run_path} at step {step}")

    model.train()
    started = time.perf_counter() - elapsed
    window_losses: list[float] = []
    bar = tqdm(total=config.steps, initial=step, desc="training", disable=not progress)
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config, time.perf_counter() - started) * group.get("lr_factor", 1.0)
        final_phase = (step >= config.steps * (1 - config.final_fraction)
                       or (config.max_minutes > 0
                           and time.perf_counter() - started > config.max_minutes * 60 * (1 - config.final_fraction)))
        x, y = sampler.batch(rng, config.batch_size, shares(config, final_phase))
        logits = model(x)                                            # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        window_losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{window_losses[-1]:.3f}")
        out_of_time = config.max_minutes > 0 and time.perf_counter() - started > config.max_minutes * 60
        if step % config.eval_every == 0 or step == config.steps or out_of_time:
            held = evaluate(model, eval_batches)
            history["step"].append(step)
            history["train_loss"].append(float(np.mean(window_losses)))
            history["heldout_loss"].append(held)
            history["seconds"].append(time.perf_counter() - started)
            window_losses = []
            bar.write(f"step {step}: train {history['train_loss'][-1]:.3f}  held-out {held:.3f}  "
                      f"({history['seconds'][-1] / 60:.1f} min)")
            if plot is not None:
                plot_history(history, plot)
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                        "step": step, "elapsed_seconds": time.perf_counter() - started, "rng": rng.getstate(),
                        "torch_rng": torch.get_rng_state(), "config": asdict(config),
                        "vocabulary": list(vocab.tokens)}, run_path)
        if out_of_time:
            bar.write(f"stopping at step {step}: --max-minutes {config.max_minutes} reached")
            break
    bar.close()
    if out is not None:
        save_checkpoint(out, model, vocab, asdict(config), heldout, history)
    return history


def warm_start(model: MusicTransformer, path: Path, vocab: Vocabulary) -> None:
    """Load the weights of an earlier run (``run.pt``) or exported checkpoint
    into ``model``, whose vocabulary may be longer: tokens are only ever
    appended to the vocabulary (:func:`models.tokenizer.conditioning_tokens`),
    so the earlier vocabulary is a prefix of ``vocab`` and the new tokens' rows
    keep their fresh initialisation.

    Raises:
        ValueError: the stored vocabulary is not a prefix of ``vocab``, or the
            layer shapes differ.
    """
    payload = torch.load(path, map_location="cpu", weights_only=False)
    state = payload.get("model") or payload.get("state_dict")
    if state is None:
        raise ValueError(f"{path}: neither a training run (no 'model') nor a checkpoint (no 'state_dict')")
    stored = payload.get("vocabulary")
    old_rows = state["token_embedding.weight"].shape[0]
    if stored is not None and list(stored) != list(vocab.tokens[:len(stored)]):
        raise ValueError(f"{path}: its vocabulary is not a prefix of this code's; train from scratch")
    if old_rows > len(vocab):
        raise ValueError(f"{path}: {old_rows} token rows, more than this vocabulary's {len(vocab)}")
    own = model.state_dict()
    for name, value in state.items():
        if name not in own:
            continue
        value = value.float()
        rows = name in ("token_embedding.weight", "head.weight")
        if own[name].shape[rows:] != value.shape[rows:]:
            raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, this model {tuple(own[name].shape)}")
        if rows:
            own[name][:old_rows] = value
        elif own[name].shape != value.shape:
            raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, this model {tuple(own[name].shape)}")
        else:
            own[name].copy_(value)
    model.load_state_dict(own)


def export_run(run_path: Path, out: Path, vocab: Vocabulary, heldout: dict) -> None:
    """Export a run's latest weights (its ``run.pt``, while it trains or after
    it stopped) as a checkpoint, as the end of a run would.

    Raises:
        ValueError: ``run_path`` is not a training run of this vocabulary.
    """
    state = torch.load(run_path, map_location="cpu", weights_only=False)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{run_path}: not a training run (no 'model' or 'config')")
    stored = state.get("vocabulary")
    if stored is not None and list(stored) != list(vocab.tokens):
        raise ValueError(f"{run_path}: trained with another vocabulary ({len(stored)} tokens, this code {len(vocab)})")
    config = TrainConfig(**{f.name: state["config"][f.name] for f in fields(TrainConfig) if f.name in state["config"]})
    model = MusicTransformer(model_config_of(config, 0.0, len(vocab))).use_vocabulary(vocab)
    model.load_state_dict(state["model"])
    save_checkpoint(out, model, vocab, asdict(config), heldout, state["history"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n\n")[0])
    for f in fields(TrainConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=f.default, metavar="BOOL")
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: ../shared/data)")
    parser.add_argument("--cache", type=Path, default=None, help="token cache and run directory "
                        "(default: ~/.cache/adaptive/models)")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="exported checkpoint")
    parser.add_argument("--plot", type=Path, default=MODELS_DIR / "loss.png")
    parser.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    parser.add_argument("--run-dir", type=Path, default=None, help="the resumable run's directory "
                        "(default: <cache>/run)")
    parser.add_argument("--init-from", type=Path, default=None, help="warm start: the weights of an earlier "
                        "run.pt or checkpoint (its vocabulary a prefix of this one's)")
    parser.add_argument("--export-run", type=Path, default=None, metavar="RUN_PT",
                        help="export this run.pt's weights to --out (with models/heldout.json) and exit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpus", choices=("all", "parsed", "none"), default="all",
                        help="music21's corpus (Essen, O'Neill, Ryan, Bach chorales): all (default; parsed first if "
                             "not cached), parsed (only the sources already in the cache), none")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export_run is not None:
        heldout = json.loads((MODELS_DIR / "heldout.json").read_text())
        export_run(args.export_run, args.out, Vocabulary.build(), heldout)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) from {args.export_run}")
        return
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    data_dir = (args.data or default_data_dir()).resolve()
    cache_dir = args.cache or default_cache_dir()
    vocab = Vocabulary.build()
    streams = cached_streams(data_dir, vocab, cache_dir,
                             corpus={"all": True, "parsed": "parsed", "none": False}[args.corpus])
    heldout = heldout_split(data_dir, sorted({s.file for s in streams if "#" in s.file}))
    (MODELS_DIR / "heldout.json").write_text(json.dumps(heldout, indent=1) + "\n")
    history = train(config, streams, heldout, vocab, args.run_dir or cache_dir / "run", args.out,
                    resume=args.resume, plot=args.plot, init_from=args.init_from)
    (MODELS_DIR / "training_log.json").write_text(json.dumps({"config": asdict(config), "history": history},
                                                             indent=1) + "\n")
    plot_history(history, args.plot)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {args.plot}")


if __name__ == "__main__":
    main()
