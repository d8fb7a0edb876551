"""The Whisper tiny.en front-end: read from the PyPI wheel's CTranslate2 file into a Qwen2-Audio audio tower."""
import numpy as np
import pytest
import torch

from cogito_lib.models import build_tiny_model, load_model
from cogito_lib.models import whisper_front as wf


def test_ctranslate2_file_reads_the_whole_encoder():
    variables = wf.read_ctranslate2(wf.model_bin_path(), prefix="encoder/")
    assert variables["encoder/conv1/weight"].shape == (wf.D_MODEL, wf.NUM_MEL_BINS, 3)
    assert variables["encoder/position_encodings/encodings"].shape == (1500, wf.D_MODEL)
    assert sum(k.startswith("encoder/layer_3/") for k in variables) == 12
    # the fused key bias is zero: Whisper's key projection has none
    qkv_bias = variables["encoder/layer_0/self_attention/linear_0/bias"]
    assert np.all(qkv_bias[wf.D_MODEL:2 * wf.D_MODEL] == 0) and np.any(qkv_bias[:wf.D_MODEL] != 0)


def test_tiny_whisper_build_carries_the_pretrained_weights(tmp_path):
    folder = build_tiny_model("qwen2_audio", tmp_path / "m", ["a b c"] * 20, size="tiny-whisper")
    model, _ = load_model(folder)
    state = wf.encoder_state_dict(num_layers=1, max_source_positions=150)
    tower = model.model.audio_tower.state_dict()
    for name in ("conv1.weight", "layers.0.self_attn.q_proj.weight", "layers.0.fc2.bias", "layer_norm.weight"):
        assert torch.equal(tower[name], state[name]), name
    assert tower["embed_positions.weight"].shape[0] == 150


def test_wrong_geometry_is_refused(tmp_path):
    with pytest.raises(ValueError, match="qwen2_audio"):
        build_tiny_model("qwen2_5_omni", tmp_path / "x", ["a"] * 5, size={"pretrained_audio": "whisper-tiny.en"})
