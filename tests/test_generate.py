"""Reasoning generation: prompts, batched = one-by-one, K samples, thinking/answer split, training text + labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cogito_lib.models import (
    FAMILIES, SamplingConfig, build_messages, build_prompt, build_tiny_model, build_training_text, encode_batch,
    encode_training_batch, generate_reasoning, generate_texts, load_model, reasoning_token_span, split_outputs,
    split_thinking,
)
from cogito_lib.models.generate import IGNORE_INDEX, TrainingText

CORPUS = [
    "I hear three beeps at 440 Hz, then a low tone. The answer is (B) three.",
    "The first tone is higher than the second one. So the answer is yes.",
    "user assistant question answer choices option select provided",
] * 10
FAMILY_KEYS = sorted(FAMILIES)
SMALL = {"hidden_size": 48, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64,
         "audio_d_model": 32, "audio_layers": 1, "chunk_length": 2, "vocab_size": 400}
REASONING = "I hear 3 beeps at 440 Hz, each 0.2 s long; the second is louder."
# What some Qwen3-Omni chat templates do: drop <think> content of assistant turns when user content is a list.
STRIPPING_TEMPLATE = (
    "{%- for m in messages -%}<|im_start|>{{ m['role'] }}\n"
    "{%- if m['content'] is string -%}{%- if m['role'] == 'assistant' and '</think>' in m['content'] -%}"
    "{{ m['content'].split('</think>')[-1].lstrip('\\n') }}{%- else -%}{{ m['content'] }}{%- endif -%}"
    "{%- else -%}{%- for p in m['content'] -%}{%- if p['type'] == 'audio' -%}<|audio_start|><|audio_pad|><|audio_end|>"
    "{%- else -%}{{ p['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}<|im_end|>\n{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_generate")
    loaded = {}
    for key in FAMILY_KEYS:
        model, processor = load_model(build_tiny_model(key, root / key, CORPUS, size=SMALL, seed=1))
        # a random tiny model repeats one token; wider weights make its greedy outputs differ between prompts,
        # so that batched-vs-single equality is a real test
        torch.manual_seed(3)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() >= 2 and "audio_tower" not in name:
                    param.normal_(0.0, 0.25)
        loaded[key] = (model, processor)
    return loaded


def _clips(lengths):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


# ------------------------------------------------------------------------------------------------ split
@pytest.mark.parametrize("text,thinking,answer,status,failed", [
    ("<think>\nI hear 3.\n</think>\n\n(B) three", "I hear 3.", "(B) three", "ok", False),
    ("I hear 3.\n</think>\n\n(B)", "I hear 3.", "(B)", "ok", False),  # prompt opened the tag
    ("<think>a</think> draft </think> final", "a</think> draft", "final", "ok", False),  # LAST tag wins
    ("<think>I count 1, 2, 3", "I count 1, 2, 3", "", "unclosed_think", True),
    ("<think>done</think>   ", "done", "", "empty_answer", True),
    ("(B) three", "(B) three", "", "no_think", True),
    ("", "", "", "no_think", True),
])
def test_split_thinking(text, thinking, answer, status, failed):
    split = split_thinking(text)
    assert (split.thinking, split.answer_prediction, split.parse_status, split.parse_failed) == (
        thinking, answer, status, failed)


def test_split_without_required_think_and_report_counts():
    assert split_thinking("(B) three", require_think=False).answer_prediction == "(B) three"
    report = split_outputs([["<think>x</think>(A)", "<think>unfinished"], ["no tags", "<think>y</think>(B)"]])
    assert report.num_outputs == 4 and report.num_parse_failed == 2
    assert report.status_counts == {"ok": 2, "unclosed_think": 1, "no_think": 1}
    assert report.summary()["parse_failure_rate"] == 0.5
    failed = [o for row in report.outputs for o in row if o.parse_failed]
    assert all(o.answer_prediction == "" for o in failed)  # never invented


# ------------------------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_batched_left_padded_greedy_equals_one_by_one(tiny, family):
    model, processor = tiny[family]
    questions = ["How many beeps?", "Is the first tone higher than the second one? Answer yes or no.", "Why?",
                 "Which option: (A) three (B) four"]
    prompts = [build_prompt(processor, q) for q in questions]
    clips = _clips((16000, 6000, 12000, 16000))
    sampling = SamplingConfig(max_new_tokens=10)
    batched = generate_texts(model, processor, prompts, clips, sampling, batch_size=4)
    single = [generate_texts(model, processor, [p], [c], sampling)[0] for p, c in zip(prompts, clips)]
    assert batched == single
    assert len({b[0] for b in batched}) > 1, "outputs should differ between prompts"
    # mixed: a text-only prompt in the same batch
    text_prompt = build_prompt(processor, "Just text?", with_audio=False)
    mixed = generate_texts(model, processor, [prompts[0], text_prompt], [clips[0], None], sampling, batch_size=2)
    assert mixed[0] == single[0]
    assert mixed[1] == generate_texts(model, processor, [text_prompt], None, sampling)[0]


def test_k_samples_reproducible(tiny):
    model, processor = tiny["qwen3_omni"]
    prompts = [build_prompt(processor, "How many beeps?"), build_prompt(processor, "Why?")]
    clips = _clips((16000, 8000))
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, top_p=0.95, num_samples=3, seed=5)
    first = generate_texts(model, processor, prompts, clips, sampling)
    again = generate_texts(model, processor, prompts, clips, sampling)
    assert [len(s) for s in first] == [3, 3] and first == again
    assert len(set(first[0])) > 1
    greedy = generate_texts(model, processor, prompts, clips, SamplingConfig(max_new_tokens=6, num_samples=2))
    assert all(len(s) == 2 and s[0] == s[1] for s in greedy)


def test_generate_reasoning_report(tiny):
    model, processor = tiny["qwen2_5_omni"]
    prompts = [build_prompt(processor, "How many beeps?")] * 3
    report = generate_reasoning(model, processor, prompts, _clips((16000, 9000, 4000)),
                                SamplingConfig(max_new_tokens=5), batch_size=2)
    assert report.num_outputs == 3 and len(report.outputs) == 3
    assert sum(report.status_counts.values()) == 3
    assert report.num_parse_failed == sum(o.parse_failed for row in report.outputs for o in row)
    assert report.summary()["seconds"] > 0


# ------------------------------------------------------------------------------------------------ prompts
def test_prompt_uses_family_audio_placeholder(tiny):
    for family, (_, processor) in tiny.items():
        prompt = build_prompt(processor, "How many beeps?", system="You are a careful listener.")
        assert prompt.count(FAMILIES[family].audio_token) == 1
        assert prompt.startswith("<|im_start|>system\nYou are a careful listener.<|im_end|>\n")
        assert prompt.endswith("<|im_start|>assistant\n")
    messages = build_messages("Q", audio="clip.wav")
    assert messages[-1]["content"][0] == {"type": "audio", "audio": "clip.wav"}


def test_mmar_prompt_format(tiny):
    mmar = pytest.importorskip("cogito_lib.mmar")
    from cogito_lib.models import build_mmar_prompt

    _, processor = tiny["qwen3_omni"]
    prompt = build_mmar_prompt(processor, "How many beeps?", ["two", "three"])
    assert mmar.format_prompt("How many beeps?", ["two", "three"]) in prompt
    assert "Select one option from the provided choices:" in prompt


# ------------------------------------------------------------------------------------------------ training text
@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_training_text_keeps_reasoning_and_masks_prompt(tiny, family):
    model, processor = tiny[family]
    tokenizer = processor.tokenizer
    example = build_training_text(processor, "How many beeps? (A) two (B) three", REASONING, "(B) three")
    assert example.target.startswith("<think>\n") and example.target.endswith("(B) three<|im_end|>")
    batch = encode_training_batch(processor, [example, build_training_text(processor, "Q?", "short", "(A)")],
                                  _clips((16000, 5000)))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    span = reasoning_token_span(tokenizer, ids, REASONING)
    assert span is not None, "reasoning tokens missing from input_ids"
    assert labels[span[0]:span[1]] == ids[span[0]:span[1]], "reasoning tokens masked out of the loss"
    # loss only on the assistant turn: labelled tokens decode to exactly the target
    labelled = [t for t in labels if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled, skip_special_tokens=False) == example.target
    first = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    assert tokenizer.decode(ids[:first], skip_special_tokens=False).endswith("<|im_start|>assistant\n")
    assert all(t == IGNORE_INDEX for t, m in zip(batch["labels"][1].tolist(), batch["attention_mask"][1].tolist())
               if m == 0)
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_training_text_survives_a_template_that_strips_reasoning(tiny):
    _, processor = tiny["qwen3_omni"]
    original = processor.chat_template
    try:
        processor.chat_template = STRIPPING_TEMPLATE
        messages = build_messages("How many beeps?") + [
            {"role": "assistant", "content": f"<think>\n{REASONING}\n</think>\n\n(B) three"}]
        rendered = processor.apply_chat_template(messages, tokenize=False)
        assert REASONING not in rendered  # the hazard: the template drops the reasoning
        example = build_training_text(processor, "How many beeps?", REASONING, "(B) three")
        batch = encode_training_batch(processor, [example], _clips((16000,)))
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        span = reasoning_token_span(processor.tokenizer, ids, REASONING)
        assert span is not None and labels[span[0]:span[1]] == ids[span[0]:span[1]]
    finally:
        processor.chat_template = original


def test_prompt_that_opens_think_is_not_doubled(tiny):
    _, processor = tiny["qwen3_omni"]
    original = processor.chat_template
    try:  # Qwen3 *-Thinking templates end the generation prompt with "<think>\n"
        processor.chat_template = original.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
        example = build_training_text(processor, "Q?", REASONING, "(A)")
        assert example.prompt.endswith("<think>\n") and not example.target.startswith("<think>")
        assert example.text.count("<think>") == 1
        assert split_thinking(example.target.replace("<|im_end|>", "")).answer_prediction == "(A)"
    finally:
        processor.chat_template = original


def test_answer_only_target_and_right_padding(tiny):
    _, processor = tiny["qwen2_audio"]
    example = build_training_text(processor, "Q?", None, "(A) two")
    assert example.target == "(A) two<|im_end|>" and isinstance(example, TrainingText)
    batch = encode_batch(processor, [example.prompt, "<|im_start|>user\nhi<|im_end|>\n"], [_clips((8000,))[0], None],
                         targets=[example.target, "x<|im_end|>"], padding_side="right")
    assert batch["attention_mask"][1].tolist()[0] == 1 and batch["attention_mask"][1].tolist()[-1] == 0
