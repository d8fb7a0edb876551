"""Batched decoding for models whose audio front-end is cached (`models.frontend`: the miniature's Qwen2-Audio).

It calls the model as transformers' `generate` does (a prefill from `inputs_embeds`, then one token per step with
the KV cache, the 2-D attention mask and position ids from its cumulative sum), minus the waste a 2-core CPU
feels:

- each distinct prompt is prefilled once; its K samples (and any scripted continuation of it) start from copies
  of its KV rows instead of K prefills of the same audio and question;
- prompts of similar length are batched together (`sort_by_length`: fewer pad columns), up to `max_rows` rows;
- a finished row leaves the batch (its KV rows are dropped), so a batch does not run at full width until its
  longest sample ends;
- the KV cache is preallocated and written in place (the dynamic cache copies all of it at every step);
- a row follows a script of `Segment`s: forced text, then sampled tokens until EOS, a stop string or a token
  budget. Plan-guided samples (`pipe.think`) are one script each, not one prefill per planned step.

Greedy decoding (temperature 0) takes the argmax, as greedy `generate` does; on the same batches it gives the
same tokens (tests/test_decode.py). Sampling applies the temperature, keeps the nucleus (the most probable tokens
whose mass first reaches `top_p`) and draws each token with one uniform number from a counter-based stream keyed
by (seed, the row's key, the token's position in the row). A sample therefore does not depend on the batch size,
on the order of the requests or on which other samples share its batch, only on float rounding of its own logits
(~1e-6 differences, which decide a token only at a near-tie).
"""
from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One part of a row's continuation: `text` is appended as is (tokenized on its own), then up to
    `max_new_tokens` tokens are sampled; EOS or the budget ends the segment. With `stop`, the sampled text is also
    cut after the first `stop` (kept) and the segment ends there; with `close`, `stop` is appended when EOS or the
    budget ended the segment first, so the segment always ends with it."""

    text: str = ""
    max_new_tokens: int = 0
    stop: str | None = None
    close: bool = False


@dataclass(frozen=True)
class Row:
    """One output: a continuation of prompt `prompt` (an index) following `segments`; `key` names its random
    stream and should name the seed too (e.g. "2026000|<question id>|3" for the fourth sample of a question)."""

    prompt: int
    key: str
    segments: tuple[Segment, ...]


# ----------------------------------------------------------------------------------------------- randomness
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def stream_key(key: str) -> int:
    """The 64-bit key of a row's random stream (name the seed in `key`)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:16], 16)


def uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (stream key, counter): splitmix64 of the pair, 53 bits."""
    keys = np.asarray(keys, dtype=np.uint64)
    counters = np.asarray(counters, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = keys + (counters + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0 ** 53)


def sample_tokens(logits, temperature: float, top_p: float, u: np.ndarray):
    """One token per row of `logits` ([n, vocab]): argmax when `temperature` <= 0, else the token the uniform
    number `u[i]` picks from the temperature-scaled nucleus (inverse CDF over tokens sorted by probability)."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    # the nucleus almost always lies in the top few dozen tokens: sort those; rows whose nucleus reaches past
    # them (top-k mass below top_p) are sorted in full
    k = min(TOP_FIRST, probs.shape[-1])
    sorted_p, order = probs.topk(k, dim=-1)
    wide = (sorted_p.double().sum(dim=-1) < top_p).nonzero().flatten()
    if len(wide):
        full_p, full_order = probs[wide].sort(dim=-1, descending=True, stable=True)
        picked = _inverse_cdf(full_p.double(), full_order, top_p, u[wide.numpy()])
    picks = _inverse_cdf(sorted_p.double(), order, top_p, u)
    if len(wide):
        picks[wide] = picked
    return picks


TOP_FIRST = 64  # tokens sorted before a row's nucleus is known to lie inside them


def _inverse_cdf(sorted_p, order, top_p: float, u):
    """The token each uniform number picks from a row's nucleus (probabilities sorted in descending order)."""
    import torch

    before = sorted_p.cumsum(dim=-1) - sorted_p
    kept = sorted_p * (before < top_p)
    cum = kept.cumsum(dim=-1)
    target = torch.as_tensor(u, dtype=cum.dtype, device=cum.device) * cum[:, -1]
    last = (kept > 0).sum(dim=-1) - 1
    index = torch.minimum((cum < target.unsqueeze(1)).sum(dim=-1), last.clamp(min=0))
    return order.gather(1, index.unsqueeze(1)).squeeze(1)


# ----------------------------------------------------------------------------------------------- the KV cache
def _cache():
    """A transformers `Cache` whose layers keep keys and values in a preallocated buffer, written in place."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def lazy_initialization(self, key_states, value_states) -> None:
            self.device = key_states.device
            self._keys = self._values = None
            self.length = 0
            self.is_initialized = True

        def _view(self):
            self.keys = self._keys[:, :, :self.length]
            self.values = self._values[:, :, :self.length]

        def update(self, key_states, value_states, *args, **kwargs):
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self._keys is None or self.length + n > self._keys.shape[-2]:
                capacity = max(2 * (self._keys.shape[-2] if self._keys is not None else 0), self.length + n + 64)
                grown_k = key_states.new_zeros(key_states.shape[:2] + (capacity, key_states.shape[-1]))
                grown_v = value_states.new_zeros(value_states.shape[:2] + (capacity, value_states.shape[-1]))
                if self.length:
                    grown_k[:, :, :self.length] = self._keys[:, :, :self.length]
                    grown_v[:, :, :self.length] = self._values[:, :, :self.length]
                self._keys, self._values = grown_k, grown_v
            with torch.no_grad():
                self._keys[:, :, self.length:self.length + n] = key_states
                self._values[:, :, self.length:self.length + n] = value_states
            self.length += n
            self._view()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized and self._keys is not None:
                self._keys = self._keys[indices]
                self._values = self._values[indices]
                self._view()

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized and self._keys is not None:
                self._keys = self._keys.repeat_interleave(repeats, dim=0)
                self._values = self._values.repeat_interleave(repeats, dim=0)
                self._view()

    return Cache(layer_class_to_replicate=PreallocatedLayer)


# ----------------------------------------------------------------------------------------------- rows
class _RowState:
    """Where one row is in its script: tokens still to force, the sampling budget of the current segment, the
    text of its segments so far."""

    def __init__(self, row: Row, tokenize, detokenize):
        self.row, self.tokenize, self.detokenize = row, tokenize, detokenize
        self.segment = -1
        self.queue: deque[int] = deque()
        self.budget = 0
        self.sampled: list[int] = []  # tokens sampled in the current segment
        self.columns: list[int] = []  # their KV columns
        self.pieces: list[str] = []
        self.position = 0  # tokens fed so far: the counter of the row's random stream
        self.drop: list[int] = []  # KV columns to hide from this row (a cut inside a sampled token)
        self.done = False
        self._advance()

    def _advance(self) -> None:
        """Start the next segment that has something to do (its forced text is queued), or finish."""
        while True:
            self.segment += 1
            if self.segment >= len(self.row.segments):
                self.done = True
                self.queue.clear()
                return
            segment = self.row.segments[self.segment]
            self.pieces.append(segment.text)
            self.queue.extend(self.tokenize(segment.text) if segment.text else ())
            self.budget = segment.max_new_tokens
            self.sampled, self.columns = [], []
            if self.queue or self.budget > 0:
                return

    def _end_segment(self, text: str, forced: str = "") -> None:
        """The current segment's sampled text is `text`; `forced` (a stop string the model did not write, or the
        rest of a cut token) follows it and is fed before the next segment."""
        self.pieces.append(text + forced)
        tail = self.tokenize(forced) if forced else []
        self._advance()
        if not self.done:
            self.queue.extendleft(reversed(tail))

    def wants_sample(self) -> bool:
        return not self.done and not self.queue and self.budget > 0

    def _take(self, token: int, column: int, eos: set[int]) -> int | None:
        """A sampled token: the token to feed, or None when it ends the segment without being fed."""
        segment = self.row.segments[self.segment]
        closing = segment.stop if segment.stop and segment.close else ""
        if token in eos:
            self._end_segment(self.detokenize(self.sampled), closing)
            return None
        candidate = self.detokenize(self.sampled + [token])
        if segment.stop and segment.stop in candidate:
            kept = candidate[:candidate.index(segment.stop) + len(segment.stop)]
            if kept == candidate:
                self.sampled.append(token)
                self.columns.append(column)
                self._end_segment(kept)
                return token
            before = self.detokenize(self.sampled)
            if kept.startswith(before):
                self._end_segment(before, kept[len(before):])
            else:  # the text cannot be cut at a token boundary: hide the segment's tokens and feed the kept text
                self.drop.extend(self.columns)
                self._end_segment("", kept)
            return None
        self.sampled.append(token)
        self.columns.append(column)
        self.budget -= 1
        if self.budget <= 0:
            self._end_segment(candidate, closing)
        return token

    def next_feed(self, drawn: int | None, column: int, eos: set[int]) -> int | None:
        """The token this row feeds at KV column `column` (`drawn`: its sample, if it asked for one), or None
        once it has finished."""
        token = self._take(drawn, column, eos) if drawn is not None else None
        if self.done:
            return None
        if token is None:
            token = self.queue.popleft()
        self.position += 1
        if not self.queue and self.budget <= 0 and not self.done:
            self._end_segment("")  # a segment of forced text only: fed in full
        return token

    def text(self) -> str:
        return "".join(self.pieces)


def decode(model, processor, frontend, prompts: Sequence[str], features: Sequence[Any], rows: Sequence[Row], *,
           temperature: float = 0.0, top_p: float = 1.0, eos_ids: Sequence[int] = (),
           max_rows: int = 256, sort_by_length: bool = True, progress: bool = False) -> list[str]:
    """The text of every row (forced text included, EOS excluded), in the order of `rows`.

    `prompts` are chat-template strings with one audio placeholder each and `features` their clips' cached
    front-end output (`FrontEnd.features`); each row continues one prompt. Prompts are prefilled once, in batches
    of at most `max_rows` rows (by prompt length when `sort_by_length`, else in order)."""
    import torch

    from .encoding import encode_batch

    tokenizer = processor.tokenizer
    eos = set(int(e) for e in eos_ids)
    by_prompt: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_prompt.setdefault(row.prompt, []).append(index)
    order = sorted(by_prompt)
    if sort_by_length:
        counts = frontend.counts([features[p] for p in order])
        lengths = {p: len(tokenizer(prompts[p], add_special_tokens=False)["input_ids"]) + n
                   for p, n in zip(order, counts)}
        order = sorted(order, key=lambda p: (lengths[p], p))
    batches, current, width = [], [], 0
    for p in order:
        if current and width + len(by_prompt[p]) > max_rows:
            batches.append(current)
            current, width = [], 0
        current.append(p)
        width += len(by_prompt[p])
    if current:
        batches.append(current)

    token_cache: dict[str, list[int]] = {}

    def tokenize(text: str) -> list[int]:
        if text not in token_cache:
            token_cache[text] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return token_cache[text]

    def detokenize(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    texts: list[str | None] = [None] * len(rows)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc="decode", unit="row")
    device = next(model.parameters()).device
    for batch_prompts in batches:
        row_ids = [i for p in batch_prompts for i in by_prompt[p]]
        states = [_RowState(rows[i], tokenize, detokenize) for i in row_ids]
        with torch.no_grad():
            done = _decode_batch(model, processor, frontend, [prompts[p] for p in batch_prompts],
                                 [features[p] for p in batch_prompts],
                                 [batch_prompts.index(rows[i].prompt) for i in row_ids], states,
                                 [stream_key(rows[i].key) for i in row_ids], temperature, top_p, eos, device,
                                 encode_batch, bar)
        for i, state in zip(row_ids, done):
            texts[i] = state.text()
    if bar is not None:
        bar.close()
    return texts  # type: ignore[return-value]


PAD_FEED = 0  # the token a finished row feeds while it waits to be dropped
PRUNE_FRACTION = 8  # finished rows are dropped once they are 1/8 of the batch


def _decode_batch(model, processor, frontend, prompts, features, row_prompt, states, keys, temperature, top_p, eos,
                  device, encode_batch, bar):
    import torch

    batch = encode_batch(processor, prompts, features=features)
    ids = batch["input_ids"].to(device)
    mask = batch["attention_mask"].to(device)
    embeds = frontend.embed(model, ids, features)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = _cache()
    full = bool((mask == 1).all())  # as `generate`: no mask at all when nothing is padded
    out = model(inputs_embeds=embeds, attention_mask=None if full else mask, position_ids=positions, cache=cache,
                use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    index = torch.tensor(row_prompt, dtype=torch.long, device=device)
    logits = out.logits[:, -1, :].float()[index]
    cache.batch_select_indices(index)
    mask = mask[index]
    next_pos = positions[index, -1] + 1
    keys = np.asarray(keys, dtype=np.uint64)
    active = list(range(len(states)))  # the rows still in the batch, in cache order
    finished: set[int] = set()  # positions in `active` of rows that are done but not yet dropped
    while True:
        wanting = [j for j, s in enumerate(active) if j not in finished and states[s].wants_sample()]
        drawn: dict[int, int] = {}
        if wanting:
            u = uniforms(keys[[active[j] for j in wanting]], [states[active[j]].position for j in wanting])
            drawn = dict(zip(wanting, sample_tokens(logits[wanting], temperature, top_p, u).tolist()))
        column = mask.shape[1]
        feed = []
        for j, s in enumerate(active):
            token = None if j in finished else states[s].next_feed(drawn.get(j), column, eos)
            if token is None:
                if j not in finished:
                    finished.add(j)
                    if bar is not None:
                        bar.update(1)
                token = PAD_FEED  # a finished row computes nothing anyone reads until it is dropped
            feed.append(token)
        if len(finished) == len(active):
            break
        if len(finished) >= max(1, len(active) // PRUNE_FRACTION):  # drop finished rows (a copy of the cache)
            keep = [j for j in range(len(active)) if j not in finished]
            index = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            mask = mask[index]
            next_pos = next_pos[index]
            feed = [feed[j] for j in keep]
            active = [active[j] for j in keep]
            finished = set()
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
        for j, s in enumerate(active):
            if states[s].drop:  # hidden tokens no longer count as positions either
                full = False
                mask[j, states[s].drop] = 0
                next_pos[j] -= len(states[s].drop)
                states[s].drop = []
        tokens = torch.tensor(feed, dtype=torch.long, device=device).unsqueeze(1)
        out = model(input_ids=tokens, attention_mask=None if full else mask, position_ids=next_pos.unsqueeze(1),
                    cache=cache, use_cache=True)
        logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1
    return states
