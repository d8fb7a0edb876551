"""The frozen audio front-end's features, computed once per clip and reused by every stage.

In the miniature (family `qwen2_audio`: the first layers of Whisper tiny.en as a frozen audio tower) the front-end
costs about 1.8 GFLOP per 4 s clip (its input is always padded to the chunk length) against 3.5 MFLOP per text
token, and every stage used to rerun it on the same clips: in every training step, once for each of the K samples
of a question, for every plan-guided step, for every evaluated model. `FrontEnd` runs it once per clip.

- **What is cached**: the audio tower's `last_hidden_state` for one clip, its real positions only (`[n, d_audio]`
  float32, n = the clip's audio tokens). It is computed by the same code as inside
  `Qwen2AudioModel.forward` (the Whisper feature extractor, then the tower with the padding mask), and the
  model then receives `inputs_embeds` built by its own embedding and projector (`FrontEnd.embed`), so the text
  decoder sees exactly the numbers it saw before: tests/test_frontend.py compares logits and a training step's
  weights bit for bit.
- **The key**: a clip's key is the sha1 of its float32 samples (its content, not its path); it lives in a folder
  named by the front-end's key, the sha1 of the tower's weights, the feature extractor's settings (and mel
  filters), the model family, the dtype and the torch / transformers versions. A changed clip or a changed
  front-end gets other keys, so stale features are never served.
- **Where**: in memory for the process and, given a folder (`layout.frontend_cache(run_dir)`:
  `RUN_DIR/cache/frontend/<front-end key>/<2 hex>/<clip key>.npy`), on disk, written atomically so a killed stage
  leaves either a whole file or none. Every stage and every process of a run shares the folder (a later
  self-distillation round reaches it through its linked folders); deleting it only costs recomputation.

Only the `qwen2_audio` family is cached (`supports`); the omni families keep the model's own path. In training the
cache is used only while the tower cannot change (`frozen`): no trainable tower weight, no dropout in it.
"""
from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FORMAT = 1  # bump when the cached arrays' meaning changes


def core_model(model):
    """The transformers model under a peft or data-parallel wrapper."""
    seen = 0
    while seen < 4:
        seen += 1
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "config"):
            model = model.module
        else:
            break
    return model


def supports(model) -> bool:
    """Whether `model` is a Qwen2-Audio model whose audio tower this cache can stand in for."""
    core = core_model(model)
    inner = getattr(core, "model", None)
    return (getattr(getattr(core, "config", None), "model_type", None) == "qwen2_audio"
            and hasattr(inner, "audio_tower") and hasattr(inner, "multi_modal_projector"))


def frozen(model) -> bool:
    """Whether the audio tower computes the same features in training as in evaluation: no trainable weight and
    no dropout (a training step may then use cached features)."""
    if not supports(model):
        return False
    tower = core_model(model).model.audio_tower
    config = tower.config
    dropouts = [getattr(config, name, 0.0) or 0.0 for name in
                ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")]
    return not any(p.requires_grad for p in tower.parameters()) and not any(dropouts)


def clip_key(waveform: np.ndarray) -> str:
    """The sha1 of a clip's samples (mono float32 at the model's rate)."""
    data = np.ascontiguousarray(waveform, dtype=np.float32)
    digest = hashlib.sha1(data.tobytes())
    digest.update(str(data.shape).encode())
    return digest.hexdigest()


def frontend_key(model, processor) -> str:
    """The front-end's identity: the tower's weights, the feature extractor's settings, family, dtype, versions."""
    import torch
    import transformers

    core = core_model(model)
    tower = core.model.audio_tower
    digest = hashlib.sha1(f"cogito-frontend-v{FORMAT}|{core.config.model_type}|{torch.__version__}|"
                          f"{transformers.__version__}".encode())
    for name, tensor in sorted(tower.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    fe = processor.feature_extractor
    settings = {k: v for k, v in fe.to_dict().items() if not isinstance(v, (np.ndarray, list))}
    digest.update(repr(sorted(settings.items(), key=lambda kv: kv[0])).encode())
    digest.update(np.ascontiguousarray(fe.mel_filters, dtype=np.float64).tobytes())
    digest.update(str(core.get_input_embeddings().weight.dtype).encode())
    return digest.hexdigest()[:16]


class FrontEnd:
    """Cached audio-tower features for one model (see the module's doc).

        frontend = FrontEnd(model, processor, cache_dir=layout.frontend_cache(run_dir))
        features = frontend.features(waveforms)            # one [n_i, d] tensor per clip
        embeds = frontend.embed(model, input_ids, features)  # what the model would embed itself

    `stats` counts clips computed, found in memory and found on disk, and the seconds spent computing.
    """

    def __init__(self, model, processor, cache_dir: str | Path | None = None, batch_size: int = 32):
        if not supports(model):
            raise ValueError(f"{type(core_model(model)).__name__} has no cacheable audio front-end "
                             "(only the qwen2_audio family); use the model's own forward")
        fe = processor.feature_extractor
        if getattr(fe, "dither", 0.0):
            raise ValueError("the feature extractor dithers (random noise): its features cannot be cached")
        self.processor = processor
        self.tower = core_model(model).model.audio_tower
        self.key = frontend_key(model, processor)
        self.folder = Path(cache_dir) / self.key if cache_dir else None
        self.batch_size = max(1, int(batch_size))
        config = core_model(model).config
        self.positions = config.audio_config.max_source_positions // 2  # tower outputs of a padded chunk
        self.audio_token_id = config.audio_token_id
        self._memory: dict[str, Any] = {}
        self.stats = {"computed": 0, "memory": 0, "disk": 0, "compute_s": 0.0}

    # -------------------------------------------------------------------------------------------- features
    def features(self, waveforms: Sequence[np.ndarray], progress: bool = False) -> list:
        """The tower's output for each clip (`[n_i, d]` float tensors), computing only the clips never seen."""
        keys = [clip_key(w) for w in waveforms]
        missing: dict[str, np.ndarray] = {}
        for key, wave in zip(keys, waveforms):
            if key in self._memory:
                self.stats["memory"] += 1
            elif key not in missing and not self._load(key):
                missing[key] = wave
        if missing:
            self._compute(missing, progress)
        return [self._memory[key] for key in keys]

    def counts(self, features: Sequence) -> list[int]:
        """Audio placeholder tokens per clip (the rows of its features)."""
        return [int(f.shape[0]) for f in features]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _load(self, key: str) -> bool:
        if self.folder is None:
            return False
        path = self._path(key)
        if not path.is_file():
            return False
        import torch

        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a torn or foreign file: recompute and overwrite it
            return False
        self._memory[key] = torch.from_numpy(array)
        self.stats["disk"] += 1
        return True

    def _store(self, key: str, array: np.ndarray) -> None:
        if self.folder is None:
            return
        from ..io import atomic_write_bytes

        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        atomic_write_bytes(self._path(key), buffer.getvalue())

    def _compute(self, missing: dict[str, np.ndarray], progress: bool) -> None:
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        from .encoding import _audio_features, processor_family

        family = processor_family(self.processor)
        items = list(missing.items())
        starts = range(0, len(items), self.batch_size)
        if progress and len(items) > self.batch_size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="front-end", unit="batch")
        started = time.perf_counter()
        tower = self.tower
        device, dtype = tower.conv1.weight.device, tower.conv1.weight.dtype
        for start in starts:
            chunk = items[start:start + self.batch_size]
            feats = _audio_features(self.processor, family, [wave for _, wave in chunk])
            input_features = feats["input_features"].to(device)
            mask = feats["feature_attention_mask"].to(device)
            # as Qwen2AudioModel.forward does it: the padding mask of the conv outputs, then the tower
            lengths, out_lengths = tower._get_feat_extract_output_lengths(mask.sum(-1))
            batch, _, frames = input_features.shape
            width = (frames - 2) // 2 + 1
            seq = torch.arange(width, dtype=lengths.dtype, device=device).unsqueeze(0).expand(batch, width)
            mask_2d = (~(seq >= lengths.unsqueeze(1).expand(batch, width))).to(dtype=torch.long)
            attention = create_bidirectional_mask(config=tower.config,
                                                  inputs_embeds=torch.zeros((batch, width, 1), dtype=dtype,
                                                                            device=device),
                                                  attention_mask=mask_2d)
            with torch.no_grad():
                hidden = tower(input_features, attention_mask=attention).last_hidden_state
            for (key, _), row, n in zip(chunk, hidden, out_lengths.tolist()):
                array = row[:n].detach().to("cpu", torch.float32).contiguous().numpy().copy()
                self._store(key, array)
                self._memory[key] = torch.from_numpy(array)
            self.stats["computed"] += len(chunk)
        self.stats["compute_s"] += time.perf_counter() - started

    # -------------------------------------------------------------------------------------------- embeddings
    def embed(self, model, input_ids, features: Sequence):
        """`inputs_embeds` for `input_ids` whose audio placeholders take `features` (one per clip, in order): the
        model's own token embedding and projector, applied as its forward applies them (the projector on the
        chunk-padded tower output), so gradients reach whatever of them is trainable."""
        import torch

        core = core_model(model)
        embeds = core.get_input_embeddings()(input_ids)
        if not len(features):
            return embeds
        width = features[0].shape[-1]
        padded = torch.zeros((len(features), self.positions, width), dtype=embeds.dtype, device=embeds.device)
        keep = torch.zeros((len(features), self.positions), dtype=torch.bool, device=embeds.device)
        for i, f in enumerate(features):
            padded[i, :f.shape[0]] = f.to(device=embeds.device, dtype=embeds.dtype)
            keep[i, :f.shape[0]] = True
        projected = core.model.multi_modal_projector(padded)[keep]
        placeholders = input_ids == self.audio_token_id
        found = int(placeholders.sum())
        if found != projected.shape[0]:
            raise ValueError(f"audio placeholders and features do not match: {found} tokens, "
                             f"{projected.shape[0]} feature rows")
        return embeds.masked_scatter(placeholders.unsqueeze(-1), projected.to(embeds.dtype))


def make_frontend(model, processor, cache_dir: str | Path | None = None, *, training: bool = False):
    """A `FrontEnd` for `model` when it has a cacheable front-end (frozen too when `training`), else None."""
    if not supports(model) or (training and not frozen(model)):
        return None
    if getattr(processor.feature_extractor, "dither", 0.0):
        return None
    return FrontEnd(model, processor, cache_dir)
