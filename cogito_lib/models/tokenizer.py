"""A local byte-level BPE tokenizer with Qwen's pre-tokenizer and each family's special tokens and chat template.

The hub is unreachable here, so tiny models get a tokenizer trained on a small local corpus. It is built the way
Qwen's own is (NFC, Qwen's split regex with one digit per token, byte-level BPE) and wrapped in transformers'
`Qwen2Tokenizer`, so a saved tiny checkpoint loads exactly like a real one.
"""
from __future__ import annotations

from typing import Iterable

from .families import CHAT_TOKENS, THINK_TOKENS, ModelFamily, get_family

# Qwen2's pre-tokenizer split: contractions, words, ONE digit per token (\p{N} without +), punctuation, spaces.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"


def family_special_tokens(family: ModelFamily | str) -> list[str]:
    """Every special token of a family's tokenizer, in a fixed order (ids are assigned in this order)."""
    family = get_family(family) if isinstance(family, str) else family
    tokens = list(CHAT_TOKENS) + list(family.special_tokens.values()) + list(THINK_TOKENS)
    return list(dict.fromkeys(tokens))


def chat_template(family: ModelFamily | str) -> str:
    """A ChatML template with the family's audio placeholder that never drops assistant reasoning.

    Assistant turns render `reasoning_content` (if given) as `<think>\\n...\\n</think>\\n\\n` before the content,
    and content that already holds `<think>...</think>` is written verbatim, whatever the user content is.
    """
    family = get_family(family) if isinstance(family, str) else family
    # The placeholder is written as one jinja expression so that whitespace control keeps its newlines.
    pieces = [piece.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
              for piece in family.audio_placeholder.split("{n}")]
    placeholder = "{{- '" + "' + audio_count.value|string + '".join(pieces) + "' -}}"
    # fmt: off
    return (
        "{%- set audio_count = namespace(value=0) -%}"
        "{%- for message in messages -%}"
            "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
            "{%- if message['role'] == 'assistant' and message.get('reasoning_content') -%}"
                "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' -}}"
            "{%- endif -%}"
            "{%- if message['content'] is string -%}"
                "{{- message['content'] -}}"
            "{%- else -%}"
                "{%- for part in message['content'] -%}"
                    "{%- if part['type'] == 'audio' or 'audio' in part or 'audio_url' in part -%}"
                        "{%- set audio_count.value = audio_count.value + 1 -%}"
                        + placeholder +
                    "{%- elif part['type'] == 'text' -%}"
                        "{{- part['text'] -}}"
                    "{%- endif -%}"
                "{%- endfor -%}"
            "{%- endif -%}"
            "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}"
            "{{- '<|im_start|>assistant\\n' -}}"
        "{%- endif -%}"
    )
    # fmt: on


def train_bpe(corpus: Iterable[str], special_tokens: list[str], vocab_size: int = 1024, min_frequency: int = 2):
    """Train a `tokenizers.Tokenizer` (byte-level BPE, Qwen split regex) on `corpus`; specials get ids after the
    learned vocabulary so the byte alphabet keeps ids 0-255."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(special_tokens), 257),
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    texts = [text for text in corpus if text]
    if not texts:
        raise ValueError("the tokenizer corpus is empty: pass a list of local texts (questions, reasoning, answers)")
    # the chat roles become whole tokens, as in Qwen's vocabulary
    texts += ["system\nuser\nassistant\n"] * (max(min_frequency, 2) * 4)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tokenizer(family: ModelFamily | str, corpus: Iterable[str], vocab_size: int = 1024,
                    min_frequency: int = 2, model_max_length: int = 4096):
    """A `Qwen2Tokenizer` trained on `corpus` with the family's special tokens, chat template and token attributes
    (`tokenizer.audio_token`, `tokenizer.audio_token_id`, ...) that the family's processor reads."""
    import json

    from transformers import AddedToken, Qwen2Tokenizer

    family = get_family(family) if isinstance(family, str) else family
    specials = family_special_tokens(family)
    trained = train_bpe(corpus, specials, vocab_size=vocab_size, min_frequency=min_frequency)
    model_state = json.loads(trained.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_state["merges"]]
    for token in specials:  # specials after the learned vocabulary, in family order
        vocab.setdefault(token, len(vocab))
    extra = {name: token for name, token in family.special_tokens.items()}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=extra,
        model_max_length=model_max_length,
        padding_side="left",
    )
    # Like Qwen3's own tokenizer, <think> and </think> are added tokens but not special: decoding with
    # skip_special_tokens=True keeps them (so the reasoning split still sees them) and drops <|im_end|>.
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials if t not in THINK_TOKENS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer.chat_template = chat_template(family)
    return tokenizer
