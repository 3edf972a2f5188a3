#!/usr/bin/env python3
"""Lists the functions in src/ longer than a limit (default 70 lines), longest first.

A function runs from its `fn` line to the closing brace at the same indentation
(rustfmt's layout); `#[cfg(test)]` modules are skipped. Usage:
    python3 scripts/long_functions.py [LIMIT]
"""
import pathlib
import re
import sys

FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def functions(path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "#[cfg(test)]":
            return
        m = FN.match(line)
        if m:
            indent = m.group(1)
            start = i
            j = i
            # A declaration without a body (trait method) ends with `;`, a one-line
            # function with `}`.
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";", "}")):
                j += 1
            if j >= len(lines) or not lines[j].rstrip().endswith("{"):
                i = j + 1
                continue
            k = j + 1
            while k < len(lines) and not (lines[k].startswith(indent + "}") and not lines[k].startswith(indent + " ")):
                k += 1
            yield m.group(2), start + 1, k - start + 1
            i = start + 1
            continue
        i += 1


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 70
    root = pathlib.Path(__file__).resolve().parent.parent / "src"
    found = []
    for path in sorted(root.rglob("*.rs")):
        for name, line, length in functions(path):
            if length > limit:
                found.append((length, f"{path.relative_to(root.parent)}:{line}", name))
    found.sort(key=lambda f: (-f[0], f[1]))
    for length, where, name in found:
        print(f"{length:5} {where} {name}")
    print(f"{len(found)} functions over {limit} lines")


main()
