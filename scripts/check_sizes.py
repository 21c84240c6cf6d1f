"""CI check of the project's size rule: no Python file in src/ over 600 lines, no class
over 400 lines (the project's standards).

Lines are counted as the file has them; a class runs from its first decorator to its
last line, as ``ast`` reports it (nested classes are measured too). Only Python source
is ours to size: vendored assets (docs_pages/static/) are copies of released files.

Prints each offender and exits 1 when there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FILE_LINES = 600
MAX_CLASS_LINES = 400

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src"


def offences(path: Path) -> list[str]:
    """What in ``path`` breaks the size rule, one line each."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    found = []
    lines = len(text.splitlines())
    if lines > MAX_FILE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(text, filename=name)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > MAX_CLASS_LINES:
                found.append(
                    f"{name}:{start}: class {node.name}: {length} lines (at most {MAX_CLASS_LINES})"
                )
    return found


def main() -> int:
    errors: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        errors += offences(path)
    for line in errors:
        print(line, file=sys.stderr)  # noqa: T201
    if errors:
        return 1
    print(  # noqa: T201
        f"check_sizes: Python files in src/ <= {MAX_FILE_LINES} lines, "
        f"classes <= {MAX_CLASS_LINES} lines"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
