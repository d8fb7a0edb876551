"""Model layer: the three audio LM families, tiny offline builds, loading, reasoning generation, backends.

    from cogito_lib.models import build_tiny_model, load_model, generate_reasoning, SamplingConfig
    folder = build_tiny_model("qwen2_5_omni", "runs/tiny/01-base-model/model", corpus=texts, size="mini")
    model, processor = load_model(folder)
"""
from .families import FAMILIES, ModelFamily, family_for_checkpoint, family_for_model_type, get_family
from .generate import (
    GenerationReport, SamplingConfig, ThinkerOutput, ThinkingSplit, TrainingText, build_messages, build_mmar_prompt,
    build_prompt, build_training_text, encode_batch, encode_training_batch, format_mmar_question, generate_reasoning,
    generate_texts, load_audio, processor_encode, reasoning_token_span, split_outputs, split_thinking,
)
from .loading import (
    FUSED_EXPERT_PARAMETERS, LoraPlan, ModelNotFoundError, add_lora, detect_family, full_omni_checkpoint,
    language_model_expert_parameters, language_model_lora_modules, language_model_lora_targets, load_adapter,
    load_model, lora_plan, lora_report,
    load_processor, resolve_checkpoint, save_model, tiny_info,
)
from .tiny import SIZES, TinySize, build_tiny_model, count_parameters, resolve_size
from .tokenizer import build_tokenizer, chat_template

__all__ = [
    "FAMILIES", "ModelFamily", "family_for_checkpoint", "family_for_model_type", "get_family",
    "GenerationReport", "SamplingConfig", "ThinkerOutput", "ThinkingSplit", "TrainingText", "build_messages",
    "build_mmar_prompt", "build_prompt", "build_training_text", "encode_batch", "encode_training_batch",
    "format_mmar_question", "generate_reasoning", "generate_texts", "load_audio", "processor_encode",
    "reasoning_token_span", "split_outputs", "split_thinking",
    "FUSED_EXPERT_PARAMETERS", "LoraPlan", "ModelNotFoundError", "add_lora", "detect_family",
    "language_model_expert_parameters", "language_model_lora_modules", "language_model_lora_targets",
    "load_adapter", "load_model", "lora_plan", "lora_report",
    "load_processor", "resolve_checkpoint", "save_model", "tiny_info", "full_omni_checkpoint",
    "SIZES", "TinySize", "build_tiny_model", "count_parameters", "resolve_size",
    "build_tokenizer", "chat_template",
]
