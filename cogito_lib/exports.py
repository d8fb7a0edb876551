"""The audited traces in the formats two public trainers accept for audio SFT, with a validator for each.

- **ms-swift** (the paper's trainer; docs/source_en/Customization/Custom-dataset.md, "Multimodal"): JSONL, one
  sample a line, `{"messages": [{"role": "user", "content": "<audio>..."}, {"role": "assistant", "content":
  "..."}], "audios": ["02-data-collection/audio/clip.wav"]}`; one `<audio>` tag per entry of `audios`. Use it with
  `swift sft --dataset <file>`.
- **LLaMA-Factory** (data/README.md, "Multimodal Audio Dataset" / "OpenAI Format"): a JSON list of the same
  `messages` + `audios` records, declared in `dataset_info.json` as `formatting: sharegpt`, columns
  `messages`/`audios`, tags `role`/`content`/`user`/`assistant` (as its own `mllm_audio_demo`). Use it with
  `dataset_dir: <folder>` and `dataset: <name>`. The number of audios must equal the number of `<audio>` tags.

Audio paths inside the run dir are written relative to it, so a copied or moved run dir's exports still point at
its own clips; the trainers resolve them against their media root, which the recipes beside each export
(`cogito_lib.recipes`) set to the run dir: ms-swift tries the working directory first, then `ROOT_IMAGE_DIR`
(swift/template/vision_utils.py), LLaMA-Factory joins `media_dir` (llamafactory/data/converter.py). Clips outside
the run dir (the paper's datasets) stay absolute.

The user turn is MMAR's prompt (`cogito_lib.mmar.format_prompt`) after the `<audio>` tag, as the thinker saw it;
the assistant turn is the thinker's own reasoning and answer, `<think>\\n...\\n</think>\\n\\nanswer` (the
self-distillation target: the likelihood of reasoning + answer given audio + question).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .io import atomic_write_text, dumps_line, read_json, scan_jsonl, write_json
from .mmar import format_prompt

AUDIO_TAG = "<audio>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DATASET_NAME = "audio_cogito"
ROLES = ("user", "assistant")
LLAMAFACTORY_ENTRY = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "audios": "audios"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


class ExportError(ValueError):
    """An export does not match its trainer's schema (the message lists the problems)."""


def user_content(question: str, choices: Sequence[str]) -> str:
    """The user turn: one audio tag, then MMAR's prompt (question, instruction, one choice per line)."""
    return AUDIO_TAG + format_prompt(question, list(choices))


def assistant_content(thinking: str, answer: str) -> str:
    """The assistant turn the model learns: its reasoning in think tags, a blank line, its answer."""
    return f"{THINK_OPEN}\n{thinking.strip()}\n{THINK_CLOSE}\n\n{answer.strip()}"


def audio_file(record: Mapping, run_dir: str | os.PathLike) -> str:
    """A record's clip as the exports name it: relative to the run dir (posix) when it lies inside it, else
    absolute (`audio_path` is relative to the run dir unless absolute)."""
    path = Path(record["audio_path"])
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path(run_dir)).as_posix()
    except ValueError:
        try:
            return path.resolve().relative_to(Path(run_dir).resolve()).as_posix()
        except ValueError:
            return str(path)


def sft_record(record: Mapping, run_dir: str | os.PathLike, *, answer_field: str = "answer_prediction") -> dict:
    """One `{"messages", "audios"}` sample from a train.jsonl record (both trainers read this shape)."""
    return {
        "messages": [
            {"role": "user", "content": user_content(record["question"], record["choices"])},
            {"role": "assistant", "content": assistant_content(record["thinking"], record[answer_field])},
        ],
        "audios": [audio_file(record, run_dir)],
    }


# --- writers ------------------------------------------------------------------------------------------------------

def export_ms_swift(records: Iterable[Mapping], run_dir: str | os.PathLike, path: str | os.PathLike, *,
                    answer_field: str = "answer_prediction") -> Path:
    """Write the ms-swift JSONL (atomically); returns its path."""
    lines = [dumps_line(sft_record(r, run_dir, answer_field=answer_field)) for r in records]
    return atomic_write_text(path, "".join(lines))


def export_llamafactory(records: Iterable[Mapping], run_dir: str | os.PathLike, dataset_dir: str | os.PathLike, *,
                        name: str = DATASET_NAME, answer_field: str = "answer_prediction") -> Path:
    """Write `<dataset_dir>/<name>.json` (a JSON list) and declare it in `<dataset_dir>/dataset_info.json`
    (other entries already there are kept); returns the data file's path."""
    dataset_dir = Path(dataset_dir)
    data = [sft_record(r, run_dir, answer_field=answer_field) for r in records]
    data_path = dataset_dir / f"{name}.json"
    atomic_write_text(data_path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    info_path = dataset_dir / "dataset_info.json"
    info = read_json(info_path, default={}) or {}
    info[name] = {"file_name": data_path.name, **json.loads(json.dumps(LLAMAFACTORY_ENTRY))}
    write_json(info_path, info)
    return data_path


def export_all(records: Sequence[Mapping], run_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               name: str = DATASET_NAME, profile: Any = None, model: str | None = None) -> dict[str, str]:
    """Both exports under `out_dir` (ms-swift/<name>.jsonl, llamafactory/<name>.json + dataset_info.json),
    each validated against its schema with audio paths resolved against the run dir; with `profile`, the
    trainer recipes beside them (`cogito_lib.recipes.write_recipes`: the ms-swift command, the LLaMA-Factory
    config, for fine-tuning `model`). Returns the paths written."""
    out_dir = Path(out_dir)
    swift = export_ms_swift(records, run_dir, out_dir / "ms-swift" / f"{name}.jsonl")
    factory = export_llamafactory(records, run_dir, out_dir / "llamafactory", name=name)
    for problems, what in ((validate_ms_swift(swift, media_root=run_dir), swift),
                           (validate_llamafactory(factory.parent, name, media_root=run_dir), factory)):
        if problems:
            raise ExportError(f"{what}: {len(problems)} problem(s): " + "; ".join(problems[:5]))
    paths = {"ms_swift": str(swift), "llamafactory": str(factory),
             "llamafactory_dataset_info": str(factory.parent / "dataset_info.json")}
    if profile is not None:
        from .recipes import write_recipes

        paths.update(write_recipes(out_dir, run_dir, profile, model=model, name=name))
    return paths


# --- validators ---------------------------------------------------------------------------------------------------

def _check_messages(messages: Any, audios: Any, *, role_key: str, content_key: str, user: str, assistant: str,
                    base_dir: Path | None, check_paths: bool, require_think: bool) -> list[str]:
    problems: list[str] = []
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    turns = list(messages)
    if isinstance(turns[0], dict) and turns[0].get(role_key) == "system":
        turns = turns[1:]  # an optional leading system turn
    expected = (user, assistant)
    for index, message in enumerate(turns):
        if not isinstance(message, dict):
            problems.append(f"message {index} is not an object")
            continue
        if message.get(role_key) != expected[index % 2]:
            problems.append(f"message {index} has role {message.get(role_key)!r}, expected {expected[index % 2]!r} "
                            "(user and assistant must alternate, starting with user)")
        if not isinstance(message.get(content_key), str) or not message[content_key].strip():
            problems.append(f"message {index} has no text {content_key!r}")
    if len(turns) % 2:
        problems.append(f"{len(turns)} user/assistant messages: the conversation must end with the assistant")
    if problems:
        return problems
    if not isinstance(audios, list) or not all(isinstance(a, str) and a for a in audios):
        return ["'audios' must be a list of paths"]
    tags = sum(m[content_key].count(AUDIO_TAG) for m in turns)
    if tags != len(audios):
        problems.append(f"{tags} {AUDIO_TAG} tag(s) but {len(audios)} audio path(s): they must match one to one")
    if any(AUDIO_TAG in m[content_key] for m in turns if m[role_key] == assistant):
        problems.append(f"an assistant message holds an {AUDIO_TAG} tag")
    if check_paths:
        for audio in audios:
            path = Path(audio)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_file():
                problems.append(f"audio file not found: {audio}")
    if require_think:
        for m in turns:
            if m[role_key] != assistant:
                continue
            text = m[content_key]
            close = text.find(f"\n{THINK_CLOSE}\n\n")
            if not text.startswith(f"{THINK_OPEN}\n") or close < 0 or text.count(THINK_CLOSE) != 1:
                problems.append("assistant message is not '<think>\\n...\\n</think>\\n\\nanswer'")
            elif not text[len(THINK_OPEN) + 1:close].strip() or not text[close + len(THINK_CLOSE) + 3:].strip():
                problems.append("assistant message has an empty reasoning or an empty answer")
    return problems


def validate_ms_swift_record(record: Any, *, base_dir: str | os.PathLike | None = None, check_paths: bool = True,
                             require_think: bool = True) -> list[str]:
    """Problems of one ms-swift sample (empty when valid): `messages` required, roles user/assistant alternating
    (optional system first), one `<audio>` tag per `audios` path, paths that exist, a think block."""
    if not isinstance(record, dict):
        return ["sample is not a JSON object"]
    if "messages" not in record:
        return ["missing required key 'messages'"]
    return _check_messages(record["messages"], record.get("audios", []), role_key="role", content_key="content",
                           user="user", assistant="assistant", base_dir=Path(base_dir) if base_dir else None,
                           check_paths=check_paths, require_think=require_think)


def validate_ms_swift(path: str | os.PathLike, *, check_paths: bool = True, require_think: bool = True,
                      media_root: str | os.PathLike | None = None) -> list[str]:
    """Problems of an ms-swift JSONL file, each prefixed with its line number (empty when valid; a file with no
    samples is valid, if useless). Relative audio paths are looked up under `media_root` (ms-swift's working
    directory or ROOT_IMAGE_DIR; default: the file's folder)."""
    path = Path(path)
    if not path.is_file():
        return [f"{path} not found"]
    problems = []
    for number, record, problem in scan_jsonl(path):
        if problem:
            problems.append(f"line {number}: {problem}")
            continue
        problems += [f"line {number}: {p}" for p in validate_ms_swift_record(
            record, base_dir=media_root or path.parent, check_paths=check_paths, require_think=require_think)]
    return problems


def validate_llamafactory(dataset_dir: str | os.PathLike, name: str = DATASET_NAME, *, check_paths: bool = True,
                          require_think: bool = True, media_root: str | os.PathLike | None = None) -> list[str]:
    """Problems of a LLaMA-Factory dataset (empty when valid): its `dataset_info.json` entry (file_name,
    formatting sharegpt, messages/audios columns, role/content tags), a JSON list of records, and each record's
    messages and audios read through the declared columns and tags. Relative audio paths are looked up under
    `media_root` (LLaMA-Factory's `media_dir`, which defaults to the dataset dir)."""
    dataset_dir = Path(dataset_dir)
    info = read_json(dataset_dir / "dataset_info.json")
    if not isinstance(info, dict):
        return [f"{dataset_dir / 'dataset_info.json'} not found or not a JSON object"]
    entry = info.get(name)
    if not isinstance(entry, dict):
        return [f"dataset_info.json has no entry {name!r}"]
    problems = []
    if entry.get("formatting") != "sharegpt":
        problems.append(f"formatting is {entry.get('formatting')!r}, expected 'sharegpt'")
    columns, tags = entry.get("columns") or {}, entry.get("tags") or {}
    for key in ("messages", "audios"):
        if not columns.get(key):
            problems.append(f"columns.{key} is not declared")
    defaults = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    tag = {key: tags.get(key, default) for key, default in defaults.items()}
    if not entry.get("file_name"):
        problems.append("file_name is not declared")
    if problems:
        return problems
    data_path = dataset_dir / entry["file_name"]
    if not data_path.is_file():
        return [f"{data_path} (file_name of {name!r}) not found"]
    try:
        data = json.loads(data_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return [f"{data_path}: not JSON ({err.msg})"]
    if not isinstance(data, list):
        return [f"{data_path}: expected a JSON list of samples"]
    for index, record in enumerate(data):
        if not isinstance(record, dict) or columns["messages"] not in record:
            problems.append(f"sample {index}: missing column {columns['messages']!r}")
            continue
        problems += [f"sample {index}: {p}" for p in _check_messages(
            record[columns["messages"]], record.get(columns["audios"], []), role_key=tag["role_tag"],
            content_key=tag["content_tag"], user=tag["user_tag"], assistant=tag["assistant_tag"],
            base_dir=Path(media_root) if media_root else dataset_dir, check_paths=check_paths,
            require_think=require_think)]
    return problems
