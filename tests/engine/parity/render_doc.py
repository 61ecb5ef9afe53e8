"""Render ``docs/circuit-tracer-parity.md`` from ``circuit_tracer_0_5_0.py``:

    python -m tests.engine.parity.render_doc

``test_parity.py`` fails when the committed file is not this rendering.
"""

from __future__ import annotations

from pathlib import Path

from . import circuit_tracer_0_5_0 as table

DOC_PATH = "docs/circuit-tracer-parity.md"

ASPECTS = {
    "missing": "not here",
    "**kwargs": "no `**kwargs`",
    "*args": "no `*args`",
}


def _here(ct_name: str) -> str:
    parts = ct_name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in table.MODULES:
            return ".".join([table.MODULES[module], *parts[cut:]])
    return "?"


def _aspect(aspect: str) -> str:
    if aspect in ASPECTS:
        return ASPECTS[aspect]
    what, _, name = aspect.partition(":")
    return {
        "default": f"default of `{name}`",
        "param": f"no `{name}`",
        "position": f"`{name}` elsewhere",
        "spelling": f"no `{name}`",
    }.get(what, aspect)


def _flag_text(flag: table.Flag) -> str:
    text = ", ".join(f"`{s}`" for s in flag.spellings)
    if flag.required:
        return text + " (required)"
    if flag.default is not Ellipsis and flag.default not in (None, False):
        return f"{text} {flag.default}"
    return text


def render_doc() -> str:
    intended = {name for name, _ in table.INTENTIONAL}
    lines = [
        "# From circuit-tracer 0.5.0",
        "",
        "What a circuit-tracer user finds where here: every name of its README, demo notebooks,",
        "package API and command line. Rendered from `tests/engine/parity/circuit_tracer_0_5_0.py`",
        "(`python -m tests.engine.parity.render_doc`);",
        "`tests/engine/parity/test_parity.py` checks each line against the code: the same name,",
        "argument names in the same positional order and the same defaults, unless listed under",
        "*What differs on purpose*.",
        "",
        "## Imports",
        "",
        "| circuit-tracer | here |",
        "|---|---|",
        *(f"| `{ct}` | `{ours}` |" for ct, ours in table.MODULES.items()),
        "",
        "`ReplacementModel.from_pretrained(model_name, transcoder_set, ...)` takes the same",
        'transcoder references (`"gemma"`, `"llama"`, `owner/repo[/sub][@rev]`, a folder) plus the',
        'shipped `"toy-world-plt"` / `"toy-world-clt"`; `model.impl` is the backend in use.',
        "",
        "## Command line",
        "",
        f"`{table.PROGRAM[0]} <command>` is `{table.PROGRAM[1]} <command>` with the same flags:",
        "",
    ]
    for command in table.COMMANDS:
        flags = [f for f in table.FLAGS if f.command == command]
        lines.append(f"- `{command}`: " + "; ".join(_flag_text(f) for f in flags) + ".")
    lines += [
        "",
        "`--lazy-encoder` and `--lazy-decoder` also take a `--no-` form and underscores.",
        "",
        "## Names",
        "",
        "Each circuit-tracer class or module, where it is here, and its names checked by the",
        "test (`*`: differs on purpose, below; met in the README or a demo notebook: bold).",
        "",
    ]
    groups: dict[str, list[table.Api]] = {}
    for entry in table.API:
        owner = entry.name.rpartition(".")[0] or entry.name
        groups.setdefault(owner, []).append(entry)
    for owner, entries in groups.items():
        names = []
        for entry in entries:
            leaf = entry.name.rpartition(".")[2]
            text = f"**{leaf}**" if entry.where != "API" else leaf
            names.append(text + (" *" if entry.name in intended else ""))
        lines.append(f"- `{owner}` → `{_here(owner)}`: " + ", ".join(names))
    lines += [
        "",
        "## What differs on purpose",
        "",
        "| circuit-tracer | differs in | why |",
        "|---|---|---|",
    ]
    rows: dict[tuple[str, str], list[str]] = {}  # one row per shared reason
    for (name, aspect), reason in table.INTENTIONAL.items():
        rows.setdefault((aspect, reason), []).append(f"`{name}`")
    for (aspect, reason), names in rows.items():
        lines.append(f"| {', '.join(names)} | {_aspect(aspect)} | {reason} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    root = Path(__file__).resolve().parents[3]
    (root / DOC_PATH).write_text(render_doc(), encoding="utf-8")
    print(f"wrote {DOC_PATH}")


if __name__ == "__main__":
    main()
