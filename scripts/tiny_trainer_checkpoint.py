"""A tiny random-weight Qwen3-Omni checkpoint as the external trainers load it, for recipe checks on a CPU. Run
with the python of a trainer environment (transformers 4.57.x there, whose Qwen3-Omni experts are nn.Linear):

    envs/.ms-swift/bin/python scripts/tiny_trainer_checkpoint.py OUT_DIR --tokenizer-json KIT_TINY/tokenizer.json

The model is the full `Qwen3OmniMoeForConditionalGeneration` (thinker only: enable_audio_output false), the class
ms-swift's and LLaMA-Factory's Qwen3-Omni loaders instantiate, at toy sizes (2 layers, 4 experts, hidden 64). The
tokenizer is a byte-level BPE from a kit tiny build's tokenizer.json (it holds Qwen's chat, audio and <think>
tokens); the processor pairs it with a Whisper feature extractor (128 mel bins, as Qwen3-Omni's).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPECIAL = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
MM = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
      "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
      "vision_eos_token": "<|vision_end|>"}
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                 "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
                 "{% for part in message['content'] %}{% if part['type'] == 'audio' %}"
                 "<|audio_start|><|audio_pad|><|audio_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
                 "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build(out_dir: Path, tokenizer_json: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
                              Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration, Qwen3OmniMoeProcessor,
                              WhisperFeatureExtractor)

    # extra_special_tokens: the attributes (tokenizer.audio_token, ...) the Qwen3-Omni processor reads
    tokenizer = Qwen2TokenizerFast(tokenizer_file=str(tokenizer_json), **SPECIAL, model_max_length=8192,
                                   extra_special_tokens=MM)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in MM.items()}
    hidden, heads, layers = 64, 4, 2
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, moe_intermediate_size=64,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=2, head_dim=16,
                num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, max_position_embeddings=8192,
                rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "interleaved": True,
                              "mrope_interleaved": True}, tie_word_embeddings=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    thinker = dict(text_config=text,
                   audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2,
                                     encoder_ffn_dim=64, d_model=32, output_dim=hidden, n_window=50,
                                     n_window_infer=400, downsample_hidden_size=32, max_source_positions=1500),
                   vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2,
                                      out_hidden_size=hidden, deepstack_visual_indexes=[0],
                                      num_position_embeddings=64),
                   audio_token_id=ids["audio_token"], image_token_id=ids["image_token"],
                   video_token_id=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
                   audio_end_token_id=ids["audio_eos_token"], vision_start_token_id=ids["vision_bos_token"],
                   vision_end_token_id=ids["vision_eos_token"], user_token_id=tokenizer.pad_token_id)
    config = Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=False)
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(config)
    processor = Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16), video_processor=Qwen2VLVideoProcessor(patch_size=16),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                                  chunk_length=30, n_fft=400, return_attention_mask=True),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    # the feature extractor and the image processor both save to preprocessor_config.json, the second over the
    # first; Qwen3-Omni's own checkpoint holds both in that one file, and the loaders look for both types there
    merged = {**processor.image_processor.to_dict(), **processor.feature_extractor.to_dict(),
              "image_processor_type": type(processor.image_processor).__name__,
              "feature_extractor_type": type(processor.feature_extractor).__name__,
              "processor_class": type(processor).__name__}
    (out_dir / "preprocessor_config.json").write_text(json.dumps(merged, indent=2, default=str) + "\n")
    experts = sorted({n.rsplit(".", 1)[1] for n, m in model.named_modules()
                      if ".experts." in n and isinstance(m, torch.nn.Linear)})
    print(json.dumps({"out_dir": str(out_dir), "parameters": sum(p.numel() for p in model.parameters()),
                      "vocab": len(tokenizer), "expert_linears": experts}))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--tokenizer-json", required=True, help="tokenizer.json of a kit tiny qwen3_omni build")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(Path(args.out_dir), Path(args.tokenizer_json), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
