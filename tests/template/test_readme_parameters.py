"""The README's parameter table names every template parameter with the template's default.

The table is what a platform engineer reads before ``sam deploy``; it had drifted (two infra
image defaults from an older template, one parameter missing) with nothing to notice it.
"""

from __future__ import annotations

import re
from pathlib import Path

from devtools.template import load_template

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_defaults() -> dict[str, str]:
    """Parameter -> default as the README's table writes it (``A`` / ``B`` rows give two)."""
    section = README.read_text().split("### Parameters", 1)[1].split("\n### ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")] if len(names) > 1 else [cells[1]]
        assert len(defaults) == len(names), f"README row {cells[0]}: one default per name"
        found.update(zip(names, defaults, strict=True))
    return found


def as_readme_writes(default: object) -> set[str]:
    """The ways the README may write a template default."""
    if default is None:
        return {"(required)"}
    if default == "":
        return {"empty", '`""`'}
    text = str(default)
    return {f"`{text}`", text, f"SSM `{text}`"}


def test_every_parameter_is_in_the_readme_with_the_template_s_default() -> None:
    parameters = load_template()["Parameters"]
    documented = readme_defaults()
    assert sorted(set(parameters) - set(documented)) == [], "parameters missing from the README's table"
    assert sorted(set(documented) - set(parameters)) == [], "README rows for parameters the template lacks"
    wrong = {
        name: (documented[name], spec.get("Default"))
        for name, spec in parameters.items()
        if documented[name] not in as_readme_writes(spec.get("Default"))
    }
    assert wrong == {}, "README default vs template default"
