"""The figures of the code's shape that issue 12 set goals for, printed for the production
packages (api_gateway, conductor, compute_agent, shared, stratus) of a checkout:

* modules at the gateway root;
* ``instance-{`` (the domain-name convention) outside shared/rpcapi.py;
* ``asyncpg.Record`` and ``Any`` in function signatures outside shared/db;
* SQL statements (string literals that read as SQL) outside shared/db;
* pairs of repeated blocks of six or more lines, from the ``duplicates`` command where it is
  on PATH (a copy of the five packages is read, so tests and data do not count).

    python bench/code_figures.py [CHECKOUT]
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("api_gateway", "conductor", "compute_agent", "shared", "stratus")
SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b"
    r"|WITH\s+\w+\s+AS\b|LOCK\s+TABLE\b|CREATE\s+(TEMP|TABLE|INDEX)|DROP\s+TABLE)",
    re.S,
)


def _annotations(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    found = [ast.unparse(a.annotation) for a in arguments if a.annotation is not None]
    return found + ([ast.unparse(node.returns)] if node.returns is not None else [])


def figures(root: Path) -> dict[str, int]:
    counts = {"record": 0, "any": 0, "sql": 0, "instance": 0}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            relative = path.relative_to(root).as_posix()
            text = path.read_text()
            if relative != "shared/rpcapi.py":
                counts["instance"] += text.count("instance-{")
            if relative.startswith("shared/db/"):
                continue
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    for annotation in _annotations(node):
                        counts["record"] += "asyncpg.Record" in annotation
                        counts["any"] += bool(re.search(r"\bAny\b", annotation))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    counts["sql"] += bool(SQL.match(node.value))
    return counts


def duplicate_pairs(root: Path) -> str:
    if shutil.which("duplicates") is None:
        return "(the duplicates command is not on PATH)"
    with tempfile.TemporaryDirectory() as copy:
        for package in PACKAGES:
            shutil.copytree(
                root / package, Path(copy) / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        out = subprocess.run(
            ["duplicates", "--repo", copy, "--most", "1", "--seconds", "60"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    return out.splitlines()[0] if out else "(no answer)"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    counts = figures(root)
    rows = [
        ("modules at the gateway root", len(list((root / "api_gateway").glob("*.py")))),
        ("'instance-{' outside shared/rpcapi.py", counts["instance"]),
        ("asyncpg.Record in signatures outside shared/db", counts["record"]),
        ("Any in signatures outside shared/db", counts["any"]),
        ("SQL statements outside shared/db", counts["sql"]),
    ]
    for name, value in rows:
        print(f"{name:50s} {value}")
    print(f"{'repeated blocks (duplicates)':50s} {duplicate_pairs(root)}")


if __name__ == "__main__":
    main()
