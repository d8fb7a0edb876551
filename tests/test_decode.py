"""Batched decoding with a cached front-end (`models.decode`): greedy equals transformers' `generate` on the same
batches, a sample depends on its seed and key only (not on its batch), scripts force text and cut at stop
strings, and the sampler draws from the nucleus by inverse CDF."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cogito_lib.models import SamplingConfig, build_mmar_prompt, build_tiny_model, generate_texts, load_model
from cogito_lib.models.decode import Row, Segment, _RowState, decode, sample_tokens, uniforms
from cogito_lib.models.frontend import FrontEnd

CORPUS = [
    "I hear: loud low beep; quiet high beep\nCount: 2\nSo the answer is 2.",
    "How many beeps are there? Select one option from the provided choices: 1 2 3",
    "user assistant question answer choices option select provided",
] * 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_model("qwen2_audio", tmp_path_factory.mktemp("decode") / "m", CORPUS, size="tiny-whisper",
                              seed=0)
    model, processor = load_model(folder)
    torch.manual_seed(3)  # wider weights: outputs that differ per prompt and do not stop at once
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "audio_tower" not in name:
                param.normal_(0.0, 0.25)
    rng = np.random.default_rng(0)
    clips = [(0.2 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.0, 2.8, 0.6, 2.0, 1.4, 2.5)]
    prompts = [build_mmar_prompt(processor, q, ["1", "2", "3"]) for q in
               ("How many beeps are there?", "Which is first?", "How many?", "Is it loud?", "Count the beeps.",
                "What do you hear first?")]
    return model, processor, prompts, clips


def test_greedy_decoding_gives_the_tokens_of_transformers_generate(tiny):
    model, processor, prompts, clips = tiny
    sampling = SamplingConfig(max_new_tokens=24)
    reference = generate_texts(model, processor, prompts, clips, sampling, batch_size=4, frontend=False)
    assert len({t[0] for t in reference}) > 1  # the test means something: outputs differ
    same_batches = generate_texts(model, processor, prompts, clips, sampling, batch_size=4, sort_by_length=False)
    assert same_batches == reference


def test_a_sample_depends_on_its_seed_and_key_not_on_its_batch(tiny):
    model, processor, prompts, clips = tiny
    sampling = SamplingConfig(max_new_tokens=20, temperature=0.9, top_p=0.95, num_samples=3, seed=7)
    keys = [f"q{i}" for i in range(len(prompts))]
    wide = generate_texts(model, processor, prompts, clips, sampling, batch_size=8, keys=keys)
    narrow = generate_texts(model, processor, prompts[::-1], clips[::-1], sampling, batch_size=1,
                            keys=keys[::-1], sort_by_length=False)
    assert wide == narrow[::-1]
    assert any(len(set(samples)) > 1 for samples in wide)  # K samples differ
    other_seed = generate_texts(model, processor, prompts, clips, SamplingConfig(
        max_new_tokens=20, temperature=0.9, top_p=0.95, num_samples=3, seed=8), batch_size=8, keys=keys)
    assert other_seed != wide


def test_a_script_forces_its_text_and_ends_each_step_at_its_stop(tiny):
    model, processor, prompts, clips = tiny
    frontend = FrontEnd(model, processor)
    features = frontend.features(clips[:2])
    script = (Segment("I hear: beep\n"), Segment("Count:", 6, stop="\n", close=True),
              Segment("So the answer is", 10))
    rows = [Row(0, "s|a|0", script), Row(0, "s|a|1", script), Row(1, "s|b|0", (Segment("", 8),))]
    texts = decode(model, processor, frontend, prompts[:2], features, rows, temperature=1.0, top_p=1.0,
                   eos_ids=[processor.tokenizer.convert_tokens_to_ids("<|im_end|>")], max_rows=2)
    for text in texts[:2]:
        assert text.startswith("I hear: beep\nCount:")
        step, rest = text[len("I hear: beep\nCount:"):].split("\n", 1)
        assert "\n" not in step and rest.startswith("So the answer is")
    assert texts[0] != texts[1]  # two samples of one prompt, two streams
    assert not texts[2].startswith("I hear")


class _Toy:
    """A toy vocabulary for the row logic: 1 'a', 2 '\\nb', 3 '\\n', 9 EOS."""

    words = {1: "a", 2: "\nb", 3: "\n", 9: ""}

    def tokenize(self, text):
        out = []
        while text:
            if text.startswith("\n"):
                out.append(3)
                text = text[1:]
            else:
                out.append(1)
                text = text[1:]
        return out

    def detokenize(self, ids):
        return "".join(self.words[i] for i in ids)


def test_a_token_that_runs_past_the_stop_is_cut_and_the_rest_forced():
    toy = _Toy()
    state = _RowState(Row(0, "k", (Segment("", 5, stop="\n", close=True), Segment("a", 2))), toy.tokenize,
                      toy.detokenize)
    assert state.wants_sample() and state.next_feed(1, 10, {9}) == 1  # 'a'
    # '\nb' contains the stop with 'b' after it: not fed; the missing '\n' is forced, then the next segment's 'a'
    assert state.next_feed(2, 11, {9}) == 3
    assert state.next_feed(None, 12, {9}) == 1
    assert state.wants_sample() and state.next_feed(9, 13, {9}) is None  # EOS ends the last segment
    assert state.text() == "a\na" and state.done


def test_eos_inside_a_closed_step_still_ends_it_with_its_stop():
    toy = _Toy()
    state = _RowState(Row(0, "k", (Segment("a", 4, stop="\n", close=True), Segment("a", 1))), toy.tokenize,
                      toy.detokenize)
    assert state.next_feed(None, 0, {9}) == 1  # the forced 'a'
    assert state.next_feed(1, 1, {9}) == 1
    assert state.next_feed(9, 2, {9}) == 3  # EOS: the stop is fed instead
    assert state.next_feed(None, 3, {9}) == 1
    assert state.next_feed(1, 4, {9}) is None  # budget of the last segment spent
    assert state.text() == "aa\naa"


def test_the_sampler_draws_from_the_nucleus_by_inverse_cdf():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    picks = [int(sample_tokens(logits, 1.0, 0.9, np.array([u]))[0]) for u in (0.0, 0.5, 0.6, 0.99)]
    assert picks == [1, 1, 3, 2]  # token 0 (5%) is outside the 90% nucleus
    assert int(sample_tokens(logits, 0.0, 0.9, np.array([0.7]))[0]) == 1  # greedy
    u = uniforms(np.full(20000, 12345, dtype=np.uint64), np.arange(20000))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01
    assert np.array_equal(u, uniforms(np.full(20000, 12345, dtype=np.uint64), np.arange(20000)))
