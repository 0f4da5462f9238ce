#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a loop.

Reads every `.rs` file under each crate's `src/` (tests, benches and `#[cfg(test)]`
modules excluded), maps each `crate::a::b::Name` path it mentions to the file
that defines module `a::b` (or `a`), and looks for cycles in that file graph.
`super::` paths count too. Prints each cycle with the names that tie it.

Usage: scripts/import-cycles.py [CRATE_SRC_DIR...]
(default: the src/ of every workspace crate except generated code).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRATES = ["es/src", "dataplane/src", "controlplane/src", "clients/rust/src", "proto/src", "integration/src"]

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_without_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod tests { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : i + m.start()])
        depth, j = 1, i + m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    return "".join(out)


def check(src: Path) -> list[str]:
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    edges: dict[Path, dict[Path, set[str]]] = {}

    def resolve(base: tuple[str, ...], segments: list[str]) -> Path | None:
        # The longest prefix that names a module file of this crate.
        for n in range(len(segments), 0, -1):
            target = files.get(base + tuple(segments[:n]))
            if target is not None:
                return target
        return None

    for module, file in files.items():
        text = code_without_tests(file.read_text())
        uses: list[tuple[str, list[str]]] = []
        for m in USE_GROUP_RE.finditer(text):
            prefix = [s for s in m.group(2).split("::") if s]
            for item in re.split(r",", m.group(3)):
                item = item.strip().split(" as ")[0].strip()
                if not item or "{" in item or "}" in item:
                    continue
                uses.append((m.group(1), prefix + [s for s in item.split("::") if s and s != "self"]))
        for m in PATH_RE.finditer(text):
            uses.append((m.group(1), [s for s in m.group(2).split("::") if s]))
        for root, segments in uses:
            # `super` of module a::b (a/b.rs or a/b/mod.rs) is module a.
            base: tuple[str, ...] = () if root == "crate" else module[:-1]
            target = resolve(base, segments)
            if target is None or target == file:
                continue
            edges.setdefault(file, {}).setdefault(target, set()).add(segments[-1])

    cycles, seen = [], set()
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    counter = [0]

    def strongconnect(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                members = set(component)
                lines = [f"circle of {len(component)} files:"]
                for a in sorted(members):
                    for b, names in sorted(edges.get(a, {}).items()):
                        if b in members:
                            lines.append(
                                f"  {a.relative_to(ROOT)} -> {b.relative_to(ROOT)}: {', '.join(sorted(names))}"
                            )
                key = frozenset(members)
                if key not in seen:
                    seen.add(key)
                    cycles.append("\n".join(lines))

    sys.setrecursionlimit(10000)
    for v in list(files.values()):
        if v not in index:
            strongconnect(v)
    return cycles


def main() -> int:
    crates = sys.argv[1:] or DEFAULT_CRATES
    failures = []
    for crate in crates:
        src = (ROOT / crate).resolve()
        if src.is_dir():
            failures += check(src)
    if failures:
        print("\n".join(failures))
        print(f"{len(failures)} import circle(s)", file=sys.stderr)
        return 1
    print(f"no import circles in {', '.join(crates)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
