#!/usr/bin/env python3
"""Checks the layout rules of the Rust sources: no source file over 800 lines (test files
apart), and no import circle between the modules of a crate.

A module's imports are the `crate::…` and `super::…` paths its file names (in `use` trees and
inline). A path through a re-export (`pub use` in a parent module) counts as an import of the
module that defines the item, so a parent that re-exports its children's items is not part of
a circle with them. Usage: tools/check_layout.py SRC_DIR [SRC_DIR …]  (each a crate's src/).
"""
import os
import re
import sys

MAX_LINES = 800


def module_files(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib'):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(root, f)
    return mods


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    return '\n'.join(re.sub(r'//.*', '', line) for line in text.split('\n'))


def use_paths(tree):
    """Expands a use tree (`a::{b, c::{d, e}}`) into paths."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == '{':
            if depth == 0:
                start = i
            depth += 1
        elif ch == '}':
            depth -= 1
            if depth == 0:
                prefix = tree[:start].rstrip(':').strip()
                parts, d, last = [], 0, start + 1
                inner = tree[start + 1:i]
                for j, c in enumerate(inner):
                    d += c == '{'
                    d -= c == '}'
                    if c == ',' and d == 0:
                        parts.append(inner[last - start - 1:j])
                        last = start + 1 + j + 1
                parts.append(inner[last - start - 1:])
                out = []
                for p in parts:
                    if p.strip():
                        out += [prefix + '::' + q if prefix else q for q in use_paths(p)]
                return out
    return [re.split(r'\s+as\s+', tree)[0].strip()]


def references(text, here):
    text = strip_comments(text)
    paths = []
    for m in re.finditer(r'\buse\s+([^;]+);', text, flags=re.S):
        paths += use_paths(m.group(1))
    paths += re.findall(r'\b(?:crate|super)(?:::\w+)+', text)
    out = []
    for p in paths:
        segs = [s for s in p.replace(' ', '').split('::') if s]
        if not segs:
            continue
        if segs[0] == 'crate':
            out.append(segs[1:])
        elif segs[0] == 'super':
            base = list(here)
            while segs and segs[0] == 'super':
                base = base[:-1]
                segs = segs[1:]
            out.append(base + segs)
    return out


def reexports(text):
    """`pub use child::{A, B}` / `pub use child::*` lines of a module: name -> child path, and
    '*' -> the list of glob-exported paths."""
    found = {'*': []}
    for m in re.finditer(r'\bpub(?:\([^)]*\))?\s+use\s+([^;]+);', strip_comments(text), flags=re.S):
        for p in use_paths(m.group(1)):
            segs = p.replace(' ', '').split('::')
            if segs[-1] == '*':
                found['*'].append(segs[:-1])
            else:
                found[segs[-1]] = segs[:-1]
    return found


def defines(mods, texts, mod, item):
    """Whether module `mod` defines or re-exports `item`."""
    if mod not in mods:
        return False
    text = strip_comments(texts[mod])
    pattern = r'\b(?:struct|enum|fn|const|static|trait|type|mod|union)\s+' + re.escape(item) + r'\b'
    return re.search(pattern, text) is not None or item in reexports(texts[mod])


def resolve(mods, texts, path):
    """The module that defines what `path` names."""
    for _ in range(16):
        k = len(path)
        while k > 0 and tuple(path[:k]) not in mods:
            k -= 1
        mod = tuple(path[:k])
        if k == len(path) or mod not in mods:
            return mod
        item = path[k]
        if item == '*':
            return mod
        ex = reexports(texts[mod])
        target = ex.get(item)
        if target is None:
            for glob in ex.get('*', []):
                base = glob[1:] if glob and glob[0] == 'crate' else list(mod) + glob
                if defines(mods, texts, tuple(base), item):
                    target = glob
                    break
        if target is None:
            return mod
        if target and target[0] == 'crate':
            base = target[1:]
        else:
            base = list(mod) + target
        nxt = base + [item] + path[k + 1:]
        if nxt == path:
            return mod
        path = nxt
    return tuple(path)


def cycles(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main(dirs):
    failed = False
    for src in dirs:
        mods = module_files(src)
        texts = {m: open(f).read() for m, f in mods.items()}
        for m, f in sorted(mods.items()):
            lines = texts[m].count('\n')
            is_test = 'tests' in m or f.endswith('tests.rs')
            if lines > MAX_LINES and not is_test:
                print(f'{f}: {lines} lines (at most {MAX_LINES} outside test files)')
                failed = True
        graph = {}
        for m in mods:
            for p in references(texts[m], m):
                t = resolve(mods, texts, p)
                if t != m and t in mods:
                    graph.setdefault(m, set()).add(t)
        for comp in cycles(graph):
            names = ', '.join('::'.join(c) or 'crate root' for c in comp)
            print(f'{src}: import circle between {names}')
            failed = True
    if failed:
        sys.exit(1)
    print(f'layout: {", ".join(dirs)}: no file over {MAX_LINES} lines, no import circle')


if __name__ == '__main__':
    main(sys.argv[1:] or ['core/src'])
