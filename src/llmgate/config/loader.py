"""Read YAML + environment into ``Settings``. The only code in llmgate that reads files or os.environ."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from llmgate.config.detect import detect_providers
from llmgate.config.settings import ReferenceProblems, Settings, default_cache_file, default_database

_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")
_PLACEHOLDER = "__llmgate_env_"
_PLACEHOLDER_RE = re.compile(r"__llmgate_env_(\d+)__")

# Environment overrides for the common knobs; the seed's LLM_PROXY_* names are accepted as aliases.
_OVERRIDES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("LLMGATE_STRATEGY", "LLM_PROXY_LOAD_BALANCE"), ("routing", "strategy")),
    (("LLMGATE_DATABASE",), ("storage", "database")),
    (("LLMGATE_REDIS_URL",), ("storage", "redis")),
    (("LLMGATE_MAX_RETRIES", "LLM_PROXY_MAX_RETRIES"), ("routing", "retries")),
    (("LLMGATE_CACHE_SIZE", "LLM_PROXY_CACHE_SIZE"), ("cache", "max_entries")),
    (("LLMGATE_CACHE_TTL", "LLM_PROXY_CACHE_TTL"), ("cache", "ttl")),
    (("LLMGATE_MASTER_KEY",), ("server", "master_key")),
    (("LLMGATE_METRICS_TOKEN",), ("server", "metrics_token")),
    (("PROMETHEUS_MULTIPROC_DIR",), ("server", "metrics_dir")),
    (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",), ("tracing", "endpoint")),
    (("LLMGATE_LOG_LEVEL",), ("log", "level")),
    (("LLMGATE_LOG_FORMAT",), ("log", "format")),
)


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, line and field."""


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or none) and the environment, validated and frozen."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    root: yaml.Node | None = None
    source = str(path) if path is not None else "<environment>"
    if path is not None:
        text, references = _protect(_read(Path(path)))
        root = _compose(text, source)
        loaded = _construct(root, references, env, source) if root is not None else {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{source}: the top level must be a mapping of sections (server, providers, ...)"
            )
        data = loaded
    _apply_overrides(data, env)
    if path is not None:
        _read_prompt_files(data, Path(path).parent, source)
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict) and "database" not in storage:
        storage["database"] = default_database(env)
    cache = data.setdefault("cache", {})
    if isinstance(cache, dict) and "path" not in cache:
        cache["path"] = default_cache_file(env)
    providers = data.get("providers")
    if providers is None or providers == {}:
        data["providers"] = detect_providers(env)
    data["source"] = source
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, root, source)) from None


def _read_prompt_files(data: dict[str, Any], base: Path, source: str) -> None:
    """A prompt's ``file`` (relative to the config's folder) read into its ``template`` (``file`` stays,
    saying where it came from)."""
    prompts = data.get("prompts")
    if not isinstance(prompts, dict):
        return
    for name, prompt in prompts.items():
        if not isinstance(prompt, dict) or not isinstance(prompt.get("file"), str):
            continue
        if "template" in prompt:
            raise ConfigError(
                f"{source}: prompts.{name}: give either 'template' (the text) or 'file', not both"
            )
        path = Path(prompt["file"]).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            prompt["template"] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as unreadable:
            raise ConfigError(f"{source}: prompts.{name}: cannot read {path}: {unreadable}") from None
        prompt["file"] = str(path)


def started_at_from_environment(environ: Mapping[str, str] | None = None) -> float | None:
    """``LLMGATE_STARTED_AT``: when ``llmgate serve --workers N`` started (unix seconds), so that every
    worker's "since start" figures begin at the same moment."""
    env = os.environ if environ is None else environ
    try:
        return float(env["LLMGATE_STARTED_AT"])
    except (KeyError, ValueError):
        return None


def config_path_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """``LLMGATE_CONFIG``, which ``llmgate serve --config`` sets for its worker processes."""
    env = os.environ if environ is None else environ
    return env.get("LLMGATE_CONFIG") or None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None


def _protect(text: str) -> tuple[str, list[re.Match[str]]]:
    """Swap each ``${VAR}`` for a plain placeholder, so references are valid YAML anywhere.

    (``{key: ${VAR}}`` is not valid YAML as written: ``{`` cannot start a plain scalar in a flow mapping.)
    """
    references: list[re.Match[str]] = []

    def swap(match: re.Match[str]) -> str:
        references.append(match)
        return f"{_PLACEHOLDER}{len(references) - 1}__"

    return _REFERENCE.sub(swap, text), references


def _construct(node: yaml.Node, refs: list[re.Match[str]], env: Mapping[str, str], source: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {
            _construct(key, refs, env, source): _construct(value, refs, env, source)
            for key, value in node.value
        }
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, refs, env, source) for item in node.value]
    try:
        value = yaml.SafeLoader("").construct_object(node)
    except (yaml.YAMLError, ValueError) as exc:  # e.g. an unknown tag, or a date like 2024-02-30
        raise ConfigError(f"{source}:{node.start_mark.line + 1}: cannot read this value: {exc}") from None
    if isinstance(value, str) and _PLACEHOLDER in value:
        where = f"{source}:{node.start_mark.line + 1}"
        return _PLACEHOLDER_RE.sub(lambda m: _resolve(refs[int(m.group(1))], env, where), value)
    return value


def _resolve(match: re.Match[str], env: Mapping[str, str], where: str) -> str:
    name, op, arg = match.group("name"), match.group("op"), match.group("arg")
    found = env.get(name)
    if found:
        return found
    if op == "-":
        return arg or ""
    if op == "?":
        raise ConfigError(f"{where}: environment variable {name} is required: {arg or 'not set'}")
    return ""


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for names, (section, field) in _OVERRIDES:
        for name in names:
            if env.get(name):
                target = data.setdefault(section, {})
                if isinstance(target, dict):
                    target[field] = env[name]
                break


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = [f"{source}: invalid configuration:"]
    found: list[tuple[tuple[int | str, ...], str]] = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ReferenceProblems):
            found.extend(cause.problems)
            continue
        loc = tuple(part for part in error["loc"] if part not in ("function-after",))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = _with_suggestion(message, str(loc[-1]) if loc else "")
        found.append((loc, message))
    for loc, message in found:
        if _only_a_consequence(loc, message, found):
            continue
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line is not None else source
        lines.append(f"  {where}: {_dotted(loc) or '(top level)'}: {message}")
    return "\n".join(lines)


def _only_a_consequence(
    loc: tuple[int | str, ...], message: str, found: list[tuple[tuple[int | str, ...], str]]
) -> bool:
    """Pydantic reports a list "too short" when its only items were invalid: that item's own error says
    what is wrong, the length complaint would mislead."""
    if "at least" not in message:
        return False
    return any(len(other) > len(loc) and other[: len(loc)] == loc for other, _ in found)


def _with_suggestion(message: str, name: str) -> str:
    close = difflib.get_close_matches(name, sorted(_field_names(Settings)), n=1, cutoff=0.7)
    return f"{message}: did you mean '{close[0]}'?" if close else message


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of the config models, for "did you mean" hints."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [model]
    seen: set[type[BaseModel]] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, info in current.model_fields.items():
            names.add(info.alias or name)
            pending.extend(_models_in(info.annotation))
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next(
                (v for k, v in node.value if k.value == part or k.value == f"{part}".rstrip("_")), None
            )
            if child is None:
                break
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
