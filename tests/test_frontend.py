"""The front-end feature cache: the model sees the numbers its own audio path computes (logits and a training
step, bit for bit), the disk cache is shared across instances, and a changed clip or front-end is never served
stale features."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cogito_lib.models import build_mmar_prompt, build_tiny_model, encode_batch, load_model
from cogito_lib.models.frontend import FrontEnd, clip_key, frozen, make_frontend, supports
from cogito_lib.train import LoopConfig, SFTExample, train_sft

CORPUS = [
    "I hear: loud low beep; quiet high beep\nCount: 2\nSo the answer is 2.",
    "How many beeps are there? Select one option from the provided choices: 1 2 3",
    "user assistant question answer choices option select provided",
] * 10


@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory):
    folder = build_tiny_model("qwen2_audio", tmp_path_factory.mktemp("frontend") / "m", CORPUS,
                              size="tiny-whisper", seed=0)
    model, processor = load_model(folder)
    for name, param in model.named_parameters():
        param.requires_grad_("audio_tower" not in name)
    return model, processor


def _clips(seconds, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.2 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]


def _prompts(processor, n):
    return [build_mmar_prompt(processor, f"How many beeps are there? ({i})", ["1", "2", "3"]) for i in range(n)]


def test_cached_features_give_the_logits_of_the_models_own_audio_path(whisper_model):
    model, processor = whisper_model
    waves = _clips([1.2, 2.9, 0.7, 2.0])
    prompts = _prompts(processor, len(waves))
    batch = encode_batch(processor, prompts, waves)
    frontend = FrontEnd(model, processor)
    features = frontend.features(waves)
    ids = encode_batch(processor, prompts, features=features)
    assert torch.equal(ids["input_ids"], batch["input_ids"])
    assert "input_features" not in ids
    with torch.no_grad():
        reference = model(**batch).logits
        cached = model(inputs_embeds=frontend.embed(model, ids["input_ids"], features),
                       attention_mask=ids["attention_mask"]).logits
    assert torch.equal(reference, cached)
    # the features do not depend on which other clips were encoded with them
    alone = FrontEnd(model, processor, batch_size=1).features(waves)
    assert all(torch.equal(a, b) for a, b in zip(alone, features))


def test_training_on_cached_features_equals_training_through_the_tower(whisper_model, tmp_path):
    model, processor = whisper_model
    waves = _clips([1.0, 2.5, 1.7, 0.8, 2.2], seed=1)
    paths = {f"clip{i}": w for i, w in enumerate(waves)}
    examples = [SFTExample(f"clip{i % 5}", f"How many beeps are there? ({i})\n(A) 1\n(B) 2", "Count: 2",
                           "(B) 2") for i in range(10)]
    cfg = LoopConfig(steps=3, batch_size=4, learning_rate=1e-2, seed=0)
    assert frozen(model)
    trained = []
    for use_cache in (False, True):
        copy_ = copy.deepcopy(model)
        frontend = make_frontend(copy_, processor, tmp_path / "cache", training=True) if use_cache else None
        logs = train_sft(copy_, processor, examples, cfg, audio=paths.__getitem__, progress=False,
                         frontend=frontend)
        trained.append((copy_, [r["loss"] for r in logs]))
    (plain, plain_losses), (cached, cached_losses) = trained
    assert plain_losses == cached_losses
    reference = dict(plain.named_parameters())
    changed = 0
    for name, param in cached.named_parameters():
        assert torch.equal(param, reference[name]), name
        changed += param.requires_grad
    assert changed


def test_the_disk_cache_is_shared_and_keyed_by_content_and_weights(whisper_model, tmp_path):
    model, processor = whisper_model
    waves = _clips([1.0, 1.5])
    first = FrontEnd(model, processor, tmp_path)
    features = first.features(waves)
    assert first.stats["computed"] == 2
    second = FrontEnd(model, processor, tmp_path)
    again = second.features(waves)
    assert second.stats == {**second.stats, "computed": 0, "disk": 2}
    assert all(torch.equal(a, b) for a, b in zip(features, again))
    changed_clip = waves[0].copy()
    changed_clip[100] += 0.01
    assert clip_key(changed_clip) != clip_key(waves[0])
    second.features([changed_clip])
    assert second.stats["computed"] == 1
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.model.audio_tower.parameters()).add_(1e-3)
    third = FrontEnd(other, processor, tmp_path)
    assert third.key != first.key
    moved = third.features(waves)
    assert third.stats["computed"] == 2 and not torch.equal(moved[0], features[0])


def test_a_torn_cache_file_is_recomputed(whisper_model, tmp_path):
    model, processor = whisper_model
    wave = _clips([1.3])
    frontend = FrontEnd(model, processor, tmp_path)
    good = frontend.features(wave)[0]
    path = frontend._path(clip_key(wave[0]))
    path.write_bytes(path.read_bytes()[:50])
    fresh = FrontEnd(model, processor, tmp_path)
    assert torch.equal(fresh.features(wave)[0], good) and fresh.stats["computed"] == 1


def test_only_a_frozen_qwen2_audio_tower_is_cached_in_training(whisper_model):
    model, processor = whisper_model
    assert supports(model) and make_frontend(model, processor, training=True) is not None
    trainable = copy.deepcopy(model)
    next(trainable.model.audio_tower.parameters()).requires_grad_(True)
    assert not frozen(trainable) and make_frontend(trainable, processor, training=True) is None
    assert make_frontend(trainable, processor) is not None  # generation never changes the tower
