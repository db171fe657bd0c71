#!/usr/bin/env python3
"""Fails (exit 1, one line per offence) when a file under proxy/ includes a header of a layer
above its own or of a sibling layer: includes point down only. Run by every build
(CMake target check_layers). Usage: check-layers.py PROXY_DIR

Layers, bottom to top (README "Layout"):
  0 core util         value types and small helpers everything may use
  1 inspect net metrics record policy tls
  2 dns config kernel
  3 session control
  4 app
  5 ctl, proxy/main.cpp
"""
import os, re, sys

RANK = {"core": 0, "util": 0, "inspect": 1, "net": 1, "metrics": 1, "record": 1, "policy": 1, "tls": 1,
        "dns": 2, "config": 2, "kernel": 2, "session": 3, "control": 3, "app": 4, "ctl": 5, "": 5}
GENERATED = {"build_info.hpp"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "proxy")
problems = []
for folder, _, files in os.walk(root):
    for name in sorted(files):
        if not name.endswith((".hpp", ".cpp", ".hpp.in")):
            continue
        path = os.path.join(folder, name)
        layer = os.path.relpath(folder, root).split(os.sep)[0]
        layer = "" if layer == "." else layer
        if layer not in RANK:
            problems.append(f"{path}: folder {layer}/ is in no layer (add it to scripts/check-layers.py)")
            continue
        for included in INCLUDE.findall(open(path).read()):
            if included in GENERATED:
                continue
            target = included.split("/")[0] if "/" in included else None
            if target is None:
                problems.append(f"{path}: includes \"{included}\" without its layer folder")
            elif target not in RANK:
                problems.append(f"{path}: includes \"{included}\" from no layer")
            elif target != layer and RANK[target] >= RANK[layer]:
                kind = "a sibling layer" if RANK[target] == RANK[layer] else "a layer above"
                problems.append(f"{path}: includes \"{included}\": {target}/ is {kind} of {layer or 'main'}/")
for line in problems:
    print("check-layers: " + line)
sys.exit(1 if problems else 0)
