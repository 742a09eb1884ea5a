"""Generate the README's command reference from the CLI itself.

    .venv/bin/python -m cli.docs          # print the reference
    .venv/bin/python -m cli.docs --write  # replace it in README.md between the markers
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer.main

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def commands():
    from cli.main import app
    group = typer.main.get_command(app)
    yield "", group
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            for sub_name, sub in sorted(cmd.commands.items()):
                yield f"{name} {sub_name}", sub
        else:
            yield name, cmd


def _param(p) -> str:
    if getattr(p, "param_type_name", "") == "argument":
        return f"| `{p.name.upper()}` | argument | {(getattr(p, 'help', None) or '').strip()} |"
    opts = ", ".join(f"`{o}`" for o in p.opts)
    env = f" (env `{p.envvar}`)" if getattr(p, "envvar", None) else ""
    default = ""
    if not getattr(p, "is_flag", False) and p.default not in (None, False, "") and not callable(p.default):
        default = f" Default: `{p.default}`."
    return f"| {opts} | {'flag' if getattr(p, 'is_flag', False) else 'option'} | {(p.help or '').strip()}{env}{default} |"


def reference() -> str:
    out = []
    for name, cmd in commands():
        title = f"quota {name}".strip()
        params = [p for p in cmd.params if p.name != "help"]
        help_text = (cmd.help or "").strip().replace("\b\n", "")
        out.append(f"#### `{title}`\n")
        out.append(help_text + "\n")
        if params:
            out.append("| parameter | kind | meaning |\n|---|---|---|")
            out.extend(_param(p) for p in params)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def current_readme_block(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main() -> None:
    ref = reference()
    if "--write" in sys.argv:
        text = README.read_text(encoding="utf-8")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{ref}{END}{tail}", encoding="utf-8")
    else:
        sys.stdout.write(ref)


if __name__ == "__main__":
    main()
