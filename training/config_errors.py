"""Config errors as one line: `<source>: <field path>: <reason>`, from pydantic's ValidationError.

Pydantic's own wording ("Input should be greater than 0") names neither the file nor the field the way
a config author wrote them; this keeps the service's 422s and the CLI's errors in the project's words.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# Our wording for pydantic's error types: {input} is the offending value, {kind} its type, the rest come
# from the error's context. Bounds (ge, lt, ...) are worded by _bound.
_REASONS = {
    "missing": "is required",
    "model_type": "must be a mapping, got {kind}",
    "dict_type": "must be a mapping, got {kind}",
    "list_type": "must be a list, got {input}",
    "int_type": "must be an integer, got {input}",
    "float_type": "must be a number, got {input}",
    "finite_number": "must be a finite number, got {input}",
    "bool_type": "must be true or false, got {input}",
    "string_type": "must be a string, got {input}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters long",
    "path_type": "must be a path, got {input}",
    "too_short": "must be a non-empty list",
    "too_long": "must have at most {max_length} entries, got {actual_length}",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def error_line(err: ValidationError, source: str, where: tuple[str, ...] = ()) -> str:
    """`<source>: <field path>: <reason>` for the first error, e.g. `run.yaml: stages[1].lr: must be a
    positive number, got 0`; `where` prefixes the path (a list validated on its own is `data`)."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = (*where, *first["loc"])
    if first["type"] == "extra_forbidden":  # one line for all unknown keys of the same mapping
        parent = first["loc"][:-1]
        unknown = sorted(
            str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent
        )
        loc, reason = loc[:-1], f"unknown key(s) {unknown}"
    else:
        reason = _reason(first)
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    line = f"{source}: {path}: {reason}" if path else f"{source}: {reason}"
    return " ".join(line.splitlines())


def _reason(error: ErrorDetails) -> str:
    ctx, value = error.get("ctx") or {}, repr(error["input"])
    value = value if len(value) <= 80 else value[:77] + "..."  # one readable line, whatever was sent
    if error["type"] == "value_error":  # our own validators' messages
        return str(ctx["error"])
    if error["type"] in _BOUNDS:
        return f"{_bound(ctx, *_BOUNDS[error['type']])}, got {value}"
    template = _REASONS.get(error["type"])
    if template is None:
        return f"{error['msg']}, got {value}"
    return template.format(**ctx, input=value, kind=type(error["input"]).__name__)


def _bound(ctx: dict[str, Any], key: str, op: str) -> str:
    bound = ctx[key]
    if isinstance(bound, int):
        return f"must be an integer {op} {bound}"
    if bound == 0 and op in (">", ">="):
        return "must be a positive number" if op == ">" else "must be a non-negative number"
    return f"must be a number {op} {bound:g}"
