"""Turning prompts and clips into model inputs: waveforms, the family's audio features, token ids with one
placeholder per audio token, labels on assistant tokens. Shared by generation (`generate`, `decode`), the front-end
cache (`frontend`) and training."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .families import ModelFamily, get_family

SAMPLE_RATE = 16_000
IGNORE_INDEX = -100


def load_audio(audio: str | Path | np.ndarray | Sequence[float], sample_rate: int = SAMPLE_RATE,
               source_rate: int | None = None) -> np.ndarray:
    """A mono float32 waveform at `sample_rate` from a file path or an array (resampled if `source_rate` differs)."""
    if isinstance(audio, (str, Path)):
        import soundfile as sf

        data, source_rate = sf.read(str(audio), dtype="float32", always_2d=True)
        waveform = data.mean(axis=1)
    else:
        waveform = np.asarray(audio, dtype=np.float32)
        if waveform.ndim > 1:
            waveform = waveform.mean(axis=0 if waveform.shape[0] < waveform.shape[-1] else 1)
    if source_rate and source_rate != sample_rate:
        import torch
        import torchaudio.functional as AF

        waveform = AF.resample(torch.from_numpy(waveform), source_rate, sample_rate).numpy()
    return np.ascontiguousarray(waveform, dtype=np.float32)


def processor_family(processor) -> ModelFamily:
    name = type(processor).__name__
    for key in ("qwen2_audio", "qwen2_5_omni", "qwen3_omni"):
        if get_family(key).processor_class == name:
            return get_family(key)
    raise ValueError(f"no model family uses processor class {name}")


def _feature_kwargs(family: ModelFamily) -> dict:
    # the exact audio kwargs each processor passes to its WhisperFeatureExtractor
    if family.key == "qwen3_omni":
        return dict(padding=True, truncation=False)
    return dict(padding="max_length", truncation=True)


def num_audio_tokens(family: ModelFamily, feature_lengths: np.ndarray) -> np.ndarray:
    """Audio placeholder tokens per clip from its number of real mel frames (the processor's formula)."""
    lengths = np.asarray(feature_lengths, dtype=np.int64)
    if family.key == "qwen3_omni":
        chunk = 100  # Qwen3OmniMoeProcessor.n_window * 2
        rest = lengths % chunk
        feat = (rest - 1) // 2 + 1
        return ((feat - 1) // 2 + 1 - 1) // 2 + 1 + (lengths // chunk) * 13
    return (((lengths - 1) // 2 + 1) - 2) // 2 + 1


def _audio_features(processor, family: ModelFamily, waveforms: list[np.ndarray]) -> dict:
    fe = processor.feature_extractor
    feats = fe(waveforms, sampling_rate=fe.sampling_rate, return_attention_mask=True, return_tensors="pt",
               **_feature_kwargs(family))
    mask = feats.pop("attention_mask")
    return {"input_features": feats["input_features"], "feature_attention_mask": mask}


def encode_batch(processor, texts: Sequence[str], audios: Sequence[np.ndarray | None] | None = None,
                 targets: Sequence[str] | None = None, padding_side: str = "left",
                 features: Sequence[Any] | None = None) -> dict:
    """Tokenize `texts` (chat-template strings with one audio placeholder per clip) and extract audio features,
    in one batched pass, giving the same `input_ids`/`input_features` as the family's processor.

    With `targets`, each target (assistant text) is appended to its text and `labels` hold its tokens only
    (everything else is -100). Returns a dict of tensors ready for `model(**batch)` / `model.generate(**batch)`.
    With `features` (the cached front-end output of each clip, `models.frontend`), no audio is read: each clip
    gets as many placeholders as its features have rows, and the batch carries token ids only (the caller embeds
    them with `FrontEnd.embed`).
    """
    import torch

    family = processor_family(processor)
    tokenizer = processor.tokenizer
    audio_token = family.audio_token
    audio_id = tokenizer.convert_tokens_to_ids(audio_token)
    if features is not None:
        audios = [f for f in features]
        counts = [int(f.shape[0]) for f in features]
        features_out: dict = {}
    else:
        audios = list(audios) if audios is not None else [None] * len(texts)
    if len(audios) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(audios)} audios")
    if features is None:
        waveforms = [load_audio(a) for a in audios if a is not None]
        features_out = _audio_features(processor, family, waveforms) if waveforms else {}
        counts = num_audio_tokens(family, features_out["feature_attention_mask"].sum(-1).numpy()) if waveforms else []

    # split every text at its audio placeholders; tokenize all pieces in one call
    pieces: list[str] = []
    layout: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        expected = 1 if audios[i] is not None else 0
        found = text.count(audio_token)
        if found != expected:
            raise ValueError(f"text {i} has {found} {audio_token} placeholders but {expected} audio clip(s)")
        parts = text.split(audio_token)
        if targets is not None:
            parts[-1] = parts[-1] + targets[i]
        layout.append((len(pieces), len(parts)))
        pieces.extend(parts)
    encoded = tokenizer(pieces, add_special_tokens=False, return_offsets_mapping=targets is not None)

    rows, label_rows = [], []
    clip = 0
    for i, (start, n) in enumerate(layout):
        ids: list[int] = []
        for j in range(n):
            if j > 0:
                ids.extend([audio_id] * int(counts[clip]))
                clip += 1
            piece_ids = encoded["input_ids"][start + j]
            if targets is not None and j == n - 1:
                boundary = len(pieces[start + j]) - len(targets[i])
                offsets = encoded["offset_mapping"][start + j]
                first = next((k for k, (_, end) in enumerate(offsets) if end > boundary), len(piece_ids))
                label_rows.append([IGNORE_INDEX] * (len(ids) + first) + list(piece_ids[first:]))
            ids.extend(piece_ids)
        rows.append(ids)

    width = max(len(r) for r in rows)
    pad_id = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long) if targets is not None else None
    for i, ids in enumerate(rows):
        sl = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
        input_ids[i, sl] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, sl] = 1
        if labels is not None:
            labels[i, sl] = torch.tensor(label_rows[i], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, **features_out}
    if labels is not None:
        batch["labels"] = labels
    return batch
