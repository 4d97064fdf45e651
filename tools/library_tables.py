"""The two tables of docs/library.md that are made from the code: the recipe (every default, from
twostage_lib/recipe.py) and the map of the modules (what each holds, who imports it).

    python tools/library_tables.py --write   # update docs/library.md
    python tools/library_tables.py --check   # exit 1 if docs/library.md differs (tests/test_layout.py)
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twostage_lib"
DOC = ROOT / "docs" / "library.md"


def comments(cls_name: str) -> dict:
    """{field: its comment} for the fields of dataclass ``cls_name`` in recipe.py (the text after #)."""
    lines = (PACKAGE / "recipe.py").read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name]
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            line = lines[node.end_lineno - 1]
            out[node.target.id] = line.split("# ", 1)[1].strip() if "# " in line else ""
    return out


def recipe_table() -> str:
    from twostage_lib import recipe

    notes = comments("Recipe")
    doors = {"DEFAULT": recipe.DEFAULT, "COURSE": recipe.COURSE, "RUN": recipe.RUN}
    rows = ["| setting | " + " | ".join(f"`{d}`" for d in doors) + " | why |", "|---" * (len(doors) + 2) + "|"]
    for f in fields(recipe.Recipe):
        values = [repr(getattr(r, f.name)) for r in doors.values()]
        rows.append(f"| `{f.name}` | " + " | ".join(values) + f" | {notes.get(f.name, '')} |")
    values = [f"{r.lr_stage2:g}" for r in doors.values()]
    rows.append("| `lr_stage2` | " + " | ".join(values) + " | `lr` scaled to stage 2's batch (`scaled_lr`) |")
    rows += ["", "| self-training (`SELFTRAIN`) | value | why |", "|---|---|---|"]
    notes = comments("SelfTraining")
    rows += [
        f"| `{f.name}` | {getattr(recipe.SELFTRAIN, f.name)!r} | {notes[f.name]} |" for f in fields(recipe.SELFTRAIN)
    ]
    rows += ["", "| label propagation (`PROPAGATE`) | value | why |", "|---|---|---|"]
    notes = comments("Propagation")
    rows += [
        f"| `{f.name}` | {getattr(recipe.PROPAGATE, f.name)!r} | {notes[f.name]} |" for f in fields(recipe.PROPAGATE)
    ]
    rows += ["", "| the label study (`STUDY`) | value | why |", "|---|---|---|"]
    notes = comments("StudyLengths")
    for f in fields(recipe.STUDY):
        value = getattr(recipe.STUDY, f.name)
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if f.name == "stage1_epochs" else repr(value)
        rows.append(f"| `{f.name}` | {shown} | {notes[f.name] or 'per objective: see recipe.py'} |")
    return "\n".join(rows)


def module_map() -> str:
    modules = sorted(p for p in PACKAGE.glob("*.py"))
    imported_by = {p.stem: [] for p in modules}
    holds = {}
    for path in modules:
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree) or ""
        holds[path.stem] = doc.split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".").replace("``", "`")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in imported_by:
                if path.stem not in imported_by[node.module]:
                    imported_by[node.module].append(path.stem)
    rows = ["| module | what it holds | imported by |", "|---|---|---|"]
    for path in modules:
        users = ", ".join(sorted(imported_by[path.stem])) or "-"
        rows.append(f"| `{path.name}` | {holds[path.stem]} | {users} |")
    return "\n".join(rows)


TABLES = {"recipe": recipe_table, "map": module_map}


def render(text: str) -> str:
    """``text`` with each table between its markers (<!-- recipe --> ... <!-- /recipe -->) made anew."""
    for name, make in TABLES.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start not in text or end not in text:
            raise SystemExit(f"{DOC} has no {start} ... {end} markers")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{make()}\n{end}{tail}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/library.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/library.md is not up to date")
    args = parser.parse_args()
    text = DOC.read_text()
    new = render(text)
    if args.write:
        DOC.write_text(new)
        return 0
    if args.check and new != text:
        print(f"{DOC} is out of date: run python tools/library_tables.py --write")
        return 1
    if not args.check:
        print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
