"""Split a POSIX shell script into words and simple commands, keeping each word's span. Pure.

Enough of the shell grammar for task-definition commands (``sh -c``/``bash -c`` scripts):
quotes, backslashes, the list and pipe operators. Expansions stay in the text as written.
Used to check a command against a Dynamo release line and, locally, to swap the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATORS = ("&&", "||", ";;", "&", ";", "|", "\n", "(", ")")


class ShellSyntaxError(ValueError):
    """A script the shell could not parse (an unterminated quote)."""


@dataclass(frozen=True)
class Word:
    text: str  # as written, quotes included
    value: str  # after the shell's quote removal
    start: int
    end: int


def shell_words(script: str) -> list[Word]:
    """Words and operators of ``script``, in order."""
    words: list[Word] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch in " \t":
            i += 1
            continue
        operator = next((op for op in OPERATORS if script.startswith(op, i)), None)
        if operator:
            words.append(Word(operator, operator, i, i + len(operator)))
            i += len(operator)
            continue
        start, value = i, []
        while i < n and script[i] not in " \t\n" and not any(script.startswith(op, i) for op in OPERATORS):
            ch = script[i]
            if ch == "'":
                close = script.find("'", i + 1)
                if close < 0:
                    raise ShellSyntaxError(f"unterminated ' in command: {script!r}")
                value.append(script[i + 1 : close])
                i = close + 1
            elif ch == '"':
                j, inner = i + 1, []
                while j < n and script[j] != '"':
                    if script[j] == "\\" and j + 1 < n:
                        j += 1
                    inner.append(script[j])
                    j += 1
                if j >= n:
                    raise ShellSyntaxError(f'unterminated " in command: {script!r}')
                value.append("".join(inner))
                i = j + 1
            elif ch == "\\" and i + 1 < n:
                value.append(script[i + 1])
                i += 2
            else:
                value.append(ch)
                i += 1
        words.append(Word(script[start:i], "".join(value), start, i))
    return words


def simple_commands(words: list[Word]) -> list[list[Word]]:
    commands: list[list[Word]] = [[]]
    for word in words:
        if word.text in OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]
