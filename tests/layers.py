#!/usr/bin/python3
"""Checks that the files of src/ keep to the layers of src/layers.map.

The broker is built bottom up: plain helpers (mem, buf, log, ...), then pure
MQTT code with no broker state (codec, topic trees, ...), then the store,
connections, sessions, plugins, the router, the protocol handlers and finally
the broker's lifecycle and main(). src/layers.map gives every file its layer.
A file may depend on files of its own layer and of lower layers; a dependency
that points up is a cycle waiting to happen, and is what this script catches.

Usage: layers.py SRCDIR. For every *.c and *.h of SRCDIR it reports
  - a file the map does not list;
  - #include "X.h" of a file of a higher layer ("sluice_plugin.h", the
    public plugin header, may be included anywhere; <...> and autoconfig.h
    are not looked at; any other header must be in the map);
  - a call of a function defined (not static) in a .c of a higher layer;
  - a read of a global variable of a higher layer (defined, not static, at
    file scope of a .c and declared extern in a header), and a mention of a
    higher layer's function that is not a call (taking it as a callback).
It prints one line per violation, then "layers: N files, M violations", and
"layers: ok" when there are none. Exit status: 0 clean, 1 violations.

This is not a C parser. It reads the code base's own style (kernel style,
one top-level definition or declaration after another): comments, string
and char literals are blanked first, and preprocessor lines (with their
continuations) are skipped, so calls inside macro definitions are not
seen. Braces are counted at file scope: "... name(...) {" without "=" opens
a function body, "... = {" an initializer (its names count as uses), any
other "{" a struct, union or enum body (its member names are ignored).
Names after "." and "->" are members, never the globals of other files;
__attribute__((...)) is dropped before a definition is read.
"""
import bisect
import os
import re
import sys

IGNORED = {"autoconfig"}
ANYWHERE = {"sluice_plugin"}
TAGS = {"struct", "union", "enum"}
TOKEN = re.compile(r"[A-Za-z_]\w*|->|\S")
NOISE = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
INCLUDE = re.compile(r'\s*#\s*include\s*"([^"]+)"')


def load_map(path):
    """stem -> (layer number, layer name), from lines "N NAME stem ..."."""
    layers = {}
    if not os.path.exists(path):
        sys.exit("layers: no %s" % path)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) < 2 or not words[0].isdigit():
                sys.exit("%s:%d: want LAYER NAME stem ..." % (path, n))
            for stem in words[2:]:
                if stem in layers:
                    sys.exit("%s:%d: %s listed twice" % (path, n, stem))
                layers[stem] = (int(words[0]), words[1])
    return layers


def plain(words):
    """words without __attribute__((...)), which would look like a call."""
    out, depth, skip = [], 0, False
    for w in words:
        if w == "__attribute__":
            skip = True
        elif skip:
            depth += {"(": 1, ")": -1}.get(w, 0)
            skip = depth > 0
        else:
            out.append(w)
    return out


def stem(name):
    return os.path.splitext(os.path.basename(name))[0]


class Source:
    """One file: its quoted includes and the facts its tokens give away."""

    def __init__(self, path):
        self.name = os.path.basename(path)
        self.is_c = self.name.endswith(".c")
        with open(path, errors="replace") as f:
            raw = f.read()
        text = NOISE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), raw)
        self.includes = []  # (line, header)
        lines, raw_lines, cont = text.split("\n"), raw.split("\n"), False
        for i, line in enumerate(lines):
            if cont or line.lstrip().startswith("#"):
                m = INCLUDE.match(raw_lines[i]) if not cont else None
                if m and line.lstrip()[1:].lstrip().startswith("include"):
                    self.includes.append((i + 1, m.group(1)))
                cont = line.rstrip().endswith("\\")
                lines[i] = ""
        text = "\n".join(lines)
        starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.tokens = [(m.group(), bisect.bisect(starts, m.start()))
                       for m in TOKEN.finditer(text)]
        self.funcs, self.globals, self.externs = set(), set(), set()
        self.refs = []  # (line, name, is_call): names used in code
        self.scan()

    def scan(self):
        toks, chunk, stack = self.tokens, [], []  # stack: kinds of open {
        for i, (tok, line) in enumerate(toks):
            if tok == "{":
                if stack:
                    stack.append(stack[-1])
                    continue
                words = plain(t for t, _ in chunk)
                if "(" in words and "=" not in words:
                    self.definition(words)
                    stack.append("body")
                else:
                    stack.append("code" if "=" in words else "type")
            elif tok == "}":
                if stack:
                    kind = stack.pop()
                    if not stack:
                        chunk = [] if kind == "body" else chunk + [("{}", line)]
            elif stack:
                if stack[-1] != "type" and re.match(r"[A-Za-z_]", tok):
                    prev = toks[i - 1][0]
                    nxt = toks[i + 1][0] if i + 1 < len(toks) else ""
                    if prev not in (".", "->") and prev not in TAGS:
                        self.refs.append((line, tok, nxt == "("))
            elif tok == ";":
                self.declaration(plain(t for t, _ in chunk))
                chunk = []
            else:
                chunk.append((tok, line))

    def definition(self, words):
        """A function definition "... name(...)": note a non-static one."""
        name = words[words.index("(") - 1]
        if self.is_c and "static" not in words and re.match(r"\w+$", name):
            self.funcs.add(name)

    def declaration(self, words):
        """A file-scope declaration up to ";": globals and extern names."""
        if not words or words[0] == "typedef":
            return
        head = words[:words.index("=")] if "=" in words else words
        if "(" in head:
            return  # a prototype (function pointer globals are not followed)
        pieces, cur = [], []
        for w in words:
            if w == ",":
                pieces.append(cur)
                cur = []
            else:
                cur.append(w)
        pieces.append(cur)
        for p in pieces:
            p = p[:p.index("=")] if "=" in p else p
            p = p[:p.index("[")] if "[" in p else p
            if not p or not re.match(r"[A-Za-z_]\w*$", p[-1]):
                continue
            if len(p) >= 2 and p[-2] in TAGS:
                continue  # "struct tag;": no variable
            if "extern" in words:
                self.externs.add(p[-1])
            elif self.is_c and "static" not in words:
                self.globals.add(p[-1])


def main(srcdir):
    layers = load_map(os.path.join(srcdir, "layers.map"))
    names = sorted(n for n in os.listdir(srcdir) if n.endswith((".c", ".h")))
    files = [Source(os.path.join(srcdir, n)) for n in names]
    out = []
    funcs, globs = {}, {}
    externs = set().union(*(f.externs for f in files if not f.is_c))
    for f in files:
        for name in f.funcs:
            funcs.setdefault(name, f.name)
        for name in f.globals & externs:
            globs.setdefault(name, f.name)

    def where(name):
        n, layer = layers[stem(name)]
        return "layer %d %s" % (n, layer)

    for f in files:
        if stem(f.name) not in layers:
            out.append("src/%s: not listed in src/layers.map" % f.name)
            continue
        mine = layers[stem(f.name)][0]
        for line, hdr in f.includes:
            s = stem(hdr)
            if s in IGNORED or s in ANYWHERE:
                continue
            if s not in layers:
                out.append("src/%s:%d: includes %s, not in src/layers.map"
                           % (f.name, line, hdr))
            elif layers[s][0] > mine:
                out.append("src/%s:%d: includes %s (%s) from %s"
                           % (f.name, line, hdr, where(hdr), where(f.name)))
        for line, name, is_call in f.refs:
            d = funcs.get(name) or globs.get(name)
            if not d or d == f.name or stem(d) not in layers:
                continue
            if layers[stem(d)][0] > mine:
                what = "calls %s()" % name if is_call and name in funcs else \
                    "uses %s" % name
                out.append("src/%s:%d: %s of src/%s (%s) from %s"
                           % (f.name, line, what, d, where(d), where(f.name)))
    out = list(dict.fromkeys(out))  # one line per use, however often on it
    for line in out:
        print(line)
    print("layers: %d files, %d violations" % (len(files), len(out)))
    if out:
        return 1
    print("layers: ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: layers.py SRCDIR")
    sys.exit(main(sys.argv[1]))
