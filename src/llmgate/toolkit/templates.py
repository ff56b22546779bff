"""Named prompt templates: Jinja2's sandboxed environment, typed variables, clear errors.

A template cannot reach Python internals (the sandbox refuses attribute access to private and unsafe
members), every variable it uses must be declared or given (``StrictUndefined``), and each declared
variable is checked against its type before rendering. Jinja2 loads only when prompts are configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmgate.config.toolkit import PromptSettings
from llmgate.core.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from jinja2 import Template

MAX_RENDERED = 1_000_000
"""The most characters a rendered prompt may have (a loop in a template cannot grow without bound)."""
MAX_POWER = 1_000
"""The largest exponent ``**`` may take in a template (Python's big integers grow without bound)."""

_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list, tuple),
    "object": (dict,),
}


@dataclass(frozen=True, slots=True)
class Variable:
    """A declared variable of a template."""

    name: str
    type: str = "string"
    default: Any = None
    required: bool = True
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The variable as JSON-ready fields (``GET /api/prompts``)."""
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class Prompt:
    """A named prompt: the user-message template, an optional system template, its variables."""

    name: str
    template: str
    system: str | None = None
    description: str = ""
    variables: tuple[Variable, ...] = ()
    source: str = "config"
    """Where it was defined (``config`` or a file path)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered prompt: its system text (if any) and user text, and the messages they make."""

    system: str | None
    user: str

    def messages(self) -> list[dict[str, str]]:
        """OpenAI chat messages: the system message (if any), then the user message."""
        found = [{"role": "system", "content": self.system}] if self.system else []
        return [*found, {"role": "user", "content": self.user}]


@dataclass
class Prompts:
    """The prompts a gateway knows, compiled once."""

    prompts: dict[str, Prompt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._compiled: dict[str, tuple[Template, Template | None]] = {}
        if not self.prompts:
            return
        from jinja2 import StrictUndefined  # only now: most gateways have no prompts

        self._env = _bounded_environment()(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self._compiled = {name: self._compile(prompt) for name, prompt in self.prompts.items()}

    def _compile(self, prompt: Prompt) -> tuple[Template, Template | None]:
        from jinja2 import TemplateSyntaxError, meta

        declared = {v.name for v in prompt.variables}
        compiled: list[Template | None] = []
        for part, text in (("template", prompt.template), ("system", prompt.system)):
            if text is None:
                compiled.append(None)
                continue
            try:
                parsed = self._env.parse(text)
            except TemplateSyntaxError as bad:
                raise ValueError(f"prompt '{prompt.name}' {part}, line {bad.lineno}: {bad.message}") from None
            unknown = sorted(meta.find_undeclared_variables(parsed) - declared) if declared else []
            if unknown:
                raise ValueError(
                    f"prompt '{prompt.name}' {part} uses undeclared variables: {', '.join(unknown)} "
                    f"(declared: {', '.join(sorted(declared))})"
                )
            compiled.append(self._env.from_string(text))
        user, system = compiled
        assert user is not None
        return user, system

    def names(self) -> list[str]:
        """The prompt names, sorted."""
        return sorted(self.prompts)

    def get(self, name: str) -> Prompt:
        """One prompt (``NotFound`` naming the known ones)."""
        prompt = self.prompts.get(name)
        if prompt is None:
            known = ", ".join(self.names()) or "none configured"
            raise NotFound(f"unknown prompt '{name[:128]}' (prompts: {known})", param="prompt.name")
        return prompt

    def render(self, name: str, variables: Mapping[str, Any]) -> Rendered:
        """The prompt rendered with ``variables`` (declared defaults fill the gaps). ``InvalidRequest``
        naming the variable when one is missing, of the wrong type, or unknown to the template."""
        from jinja2 import TemplateError, UndefinedError
        from jinja2.exceptions import SecurityError

        prompt = self.get(name)
        values = _checked(prompt, variables)
        user, system = self._compiled[name]
        try:
            text = _bounded(user, values, name)
            system_text = _bounded(system, values, name) if system is not None else None
        except InvalidRequest:
            raise
        except UndefinedError as missing:
            raise InvalidRequest(
                f"prompt '{name}': {missing.message} (pass it in variables)", param="prompt.variables"
            ) from None
        except SecurityError as unsafe:
            raise InvalidRequest(f"prompt '{name}': not allowed: {unsafe}", param="prompt") from None
        except TemplateError as failed:
            raise InvalidRequest(f"prompt '{name}': {failed}", param="prompt") from None
        except Exception as failed:  # the template's own error (a range too big, a division by zero)
            raise InvalidRequest(
                f"prompt '{name}' failed to render: {type(failed).__name__}: {str(failed)[:200]}",
                param="prompt",
            ) from None
        return Rendered(system_text, text)


def _bounded_environment() -> Any:
    """Jinja2's sandbox, with ``*`` and ``**`` checked before they run: ``{{ '-' * n }}`` with a
    caller's ``n`` of a billion would build a gigabyte string before any size check could see it."""
    from jinja2.sandbox import SandboxedEnvironment

    class BoundedEnvironment(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*" and _size(left, right) > MAX_RENDERED:
                raise InvalidRequest(
                    f"a template multiplication would make more than {MAX_RENDERED} items",
                    param="prompt.variables",
                )
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_POWER:
                raise InvalidRequest(
                    f"a template power over {MAX_POWER} is refused", param="prompt.variables"
                )
            return super().call_binop(context, operator, left, right)

    return BoundedEnvironment


def _size(left: Any, right: Any) -> int:
    """How many characters or items ``left * right`` would make (0 for numbers)."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
            return len(sequence) * times
    return 0


def _bounded(template: Template, values: dict[str, Any], name: str) -> str:
    """The template rendered piece by piece, stopped once it passes ``MAX_RENDERED`` characters."""
    parts, size = [], 0
    for part in template.generate(values):
        size += len(part)
        if size > MAX_RENDERED:
            raise InvalidRequest(
                f"prompt '{name}' rendered to more than {MAX_RENDERED} characters", param="prompt.variables"
            )
        parts.append(part)
    return "".join(parts)


def _checked(prompt: Prompt, given: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(given)
    declared = {variable.name: variable for variable in prompt.variables}
    if declared:
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise InvalidRequest(
                f"prompt '{prompt.name}' has no variable '{unknown[0][:64]}' "
                f"(variables: {', '.join(sorted(declared))})",
                param=f"prompt.variables.{unknown[0][:64]}",
            )
    for variable in prompt.variables:
        name = variable.name
        if name not in values:
            if variable.required:
                raise InvalidRequest(
                    f"prompt '{prompt.name}' needs the variable '{name}' ({variable.type})",
                    param=f"prompt.variables.{name}",
                )
            values[name] = variable.default
            continue
        wanted = _CHECKS.get(variable.type)
        value = values[name]
        wrong_bool = isinstance(value, bool) and variable.type in ("integer", "number")
        if wanted is not None and (not isinstance(value, wanted) or wrong_bool):
            raise InvalidRequest(
                f"prompt '{prompt.name}': variable '{name}' must be {variable.type}, "
                f"not {type(value).__name__}",
                param=f"prompt.variables.{name}",
            )
    return values


def from_settings(prompts: Mapping[str, PromptSettings]) -> Prompts:
    """Prompts from the config's ``prompts:`` section (a ``file`` was read by the config loader)."""
    built: dict[str, Prompt] = {}
    for name, settings in prompts.items():
        variables = []
        for var_name, spec in settings.variables.items():
            if isinstance(spec, str):
                variables.append(Variable(var_name, spec))
                continue
            required = spec.required if spec.required is not None else spec.default is None
            variables.append(Variable(var_name, spec.type, spec.default, required, spec.description))
        source = settings.file or "config"
        template = settings.template or ""
        built[name] = Prompt(name, template, settings.system, settings.description, tuple(variables), source)
    return Prompts(built)
