"""``agent-gateway completion bash|zsh|fish``: a completion script written from the argparse tree itself.

Why not a library: ``shtab`` writes static scripts for bash, zsh and tcsh but not fish; ``argcomplete`` covers fish
but runs the program on every Tab press, and importing this CLI costs about half a second of CPU (aiohttp,
pydantic, OpenTelemetry). So the tree is walked once here (commands, options, which options take a value,
their choices, which take a file) and emitted as a static script: Tab costs nothing but the shell, and a new
verb or option is completed as soon as it is added to the parser, with nothing to keep in step by hand.

bash gets a function driven by ``case`` tables (its variables prefixed ``ag_``: zsh reserves ``commands``);
zsh gets the same function through ``bashcompinit`` (zsh's own bash-compatibility layer); fish gets native
``complete`` lines, with each verb's and option's help as the description.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROG = "agent-gateway"


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...]
    file: bool


@dataclass(slots=True)
class Node:
    """One command path (``""``, ``"contracts"``, ``"contracts push"``): what can follow it."""

    commands: dict[str, str] = field(default_factory=dict)
    options: list[Option] = field(default_factory=list)
    files: bool = False
    """A positional argument here is a file."""

    @property
    def valued(self) -> list[str]:
        return [flag for option in self.options if option.takes_value for flag in option.flags]


def walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every command path of ``parser`` with its node, parents before children."""
    node, children = Node(), []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                node.commands[name] = helps.get(name, "")
                children.append((f"{path} {name}".strip(), child))
        elif action.option_strings:
            choices = tuple(str(c) for c in action.choices) if action.choices else ()
            node.options.append(Option(tuple(action.option_strings), action.help or "", action.nargs != 0, choices,
                                       action.type is Path))  # fmt: skip
        elif action.type is Path:
            node.files = True
    yield path, node
    for child_path, child in children:
        yield from walk(child, child_path)


BASH_DRIVER = """
_agent_gateway() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path="" word i skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then skip=0; continue; fi
        _agent_gateway_node "$path"
        if [[ " $ag_valued " == *" $word "* ]]; then skip=1
        elif [[ $word != -* && " $ag_commands " == *" $word "* ]]; then path="${path:+$path }$word"
        fi
    done
    _agent_gateway_node "$path"
    if ((skip)); then
        _agent_gateway_value "$path" "$prev"
        if [[ $ag_value == FILE ]]; then COMPREPLY=($(compgen -f -- "$cur"))
        else COMPREPLY=($(compgen -W "$ag_value" -- "$cur")); fi
    elif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$ag_options" -- "$cur"))
    elif [[ -n $ag_commands ]]; then COMPREPLY=($(compgen -W "$ag_commands" -- "$cur"))
    elif ((ag_files)); then COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -F _agent_gateway agent-gateway
"""


def bash(tree: Mapping[str, Node]) -> str:
    """``_agent_gateway_node PATH`` sets ``ag_commands``, ``ag_options``, ``ag_valued`` and ``ag_files``;
    ``_agent_gateway_value PATH OPTION`` sets ``ag_value`` to the option's choices, or ``FILE``."""
    nodes, values = [], []
    for path, node in tree.items():
        flags = " ".join(flag for option in node.options for flag in option.flags)
        nodes.append(f'        "{path}") ag_commands="{" ".join(node.commands)}" ag_options="{flags}" '
                     f'ag_valued="{" ".join(node.valued)}" ag_files={int(node.files)};;')  # fmt: skip
        for option in node.options:
            if option.choices or option.file:
                value = " ".join(option.choices) or "FILE"
                values += [f'        "{path}|{flag}") ag_value="{value}";;' for flag in option.flags]
    return "\n".join([
        f"# {PROG} completion for bash: source it from ~/.bashrc, or save it as",
        f"# ~/.local/share/bash-completion/completions/{PROG}",
        "_agent_gateway_node() {", '    case "$1" in', *nodes,
        '        *) ag_commands="" ag_options="" ag_valued="" ag_files=0;;', "    esac", "}",
        "_agent_gateway_value() {", '    ag_value=""', '    case "$1|$2" in', *values, "    esac", "}",
    ]) + BASH_DRIVER  # fmt: skip


def zsh(tree: Mapping[str, Node]) -> str:
    return (f"# {PROG} completion for zsh: add  source <({PROG} completion zsh)  to ~/.zshrc (after compinit)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash(tree).split("\n", 2)[2])  # fmt: skip


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


FISH_PATH = """
function __agent_gateway_path --description 'the agent-gateway command path typed so far'
    set -l path ''
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
        else if contains -- $word (__agent_gateway_valued $path)
            set skip 1
        else if contains -- $word (__agent_gateway_commands $path)
            set path (string trim -- "$path $word")
        end
    end
    echo $path
end
function __agent_gateway_at
    test "$(__agent_gateway_path)" = "$argv[1]"
end
complete -c agent-gateway -f
"""


def _fish_table(name: str, rows: Mapping[str, list[str]]) -> list[str]:
    cases = [f"        case {_fish_quote(path)}\n            string join \\n -- {' '.join(words)}"
             for path, words in rows.items() if words]  # fmt: skip
    return [f"function {name}", "    switch $argv[1]", *cases, "    end", "end"]


def _fish_option(path: str, option: Option) -> str:
    parts = [f"complete -c {PROG} -n {_fish_quote(f'__agent_gateway_at {_fish_quote(path)}')}"]
    for flag in option.flags:
        parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
    if option.choices:
        parts.append(f"-x -a {_fish_quote(' '.join(option.choices))}")
    elif option.file:
        parts.append("-r -F")
    elif option.takes_value:
        parts.append("-x")
    return " ".join([*parts, "-d", _fish_quote(option.help)])


def fish(tree: Mapping[str, Node]) -> str:
    lines = [f"# {PROG} completion for fish: save it as ~/.config/fish/completions/{PROG}.fish",
             *_fish_table("__agent_gateway_commands", {p: list(n.commands) for p, n in tree.items()}),
             *_fish_table("__agent_gateway_valued", {p: n.valued for p, n in tree.items()})]  # fmt: skip
    lines.append(FISH_PATH.strip())
    for path, node in tree.items():
        at = _fish_quote(f"__agent_gateway_at {_fish_quote(path)}")
        lines += [
            f"complete -c {PROG} -n {at} -a {name} -d {_fish_quote(help_)}" for name, help_ in node.commands.items()
        ]
        lines += [_fish_option(path, option) for option in node.options]
        if node.files:
            lines.append(f"complete -c {PROG} -n {at} -F")
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


def add_completion_command(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                           root: argparse.ArgumentParser) -> None:  # fmt: skip
    """``completion SHELL``: print the script for ``root``, the whole command tree."""

    async def completion(args: argparse.Namespace) -> int:
        print(SHELLS[args.shell](dict(walk(root))), end="")
        return 0

    parser = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    parser.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete in")
    parser.set_defaults(run=completion)
