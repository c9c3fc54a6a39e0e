"""Splits `perf script` output of a proxy (recorded with --call-graph dwarf) into where its CPU goes:
the kernel, NIO and the Swift runtime on NIO's behalf, and Sluice's own code (SluiceProxy frames with
the runtime calls, copies and reference counting they make).

    python3 bench/perfsplit.py PERF_SCRIPT_OUTPUT   # prints JSON: shares of samples, top own functions

A sample is Sluice's own when, walking from its leaf towards the root, a SluiceProxy frame comes
before any NIO frame or kernel frame; the kernel's when its leaf is in the kernel; NIO's otherwise.
"""
import json
import re
import sys
from collections import Counter

OWN = ("$s11SluiceProxy",)
NIO = ("$s7NIOCore", "$s8NIOPosix", "$s8NIOHTTP1", "$s6NIOSSL", "$s8NIOHTTP2")


def split(text):
    counts = Counter()
    own = Counter()
    total = 0
    for sample in text.split("\n\n"):
        frames = [line.strip() for line in sample.strip().split("\n")[1:]]
        if not frames:
            continue
        total += 1
        if "[kernel" in frames[0]:
            counts["kernel"] += 1
            continue
        kind = "nio"
        for frame in frames:
            parts = frame.split(" ", 2)
            if len(parts) < 2:
                continue
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", parts[1])
            if symbol.startswith(OWN):
                kind = "own"
                own[symbol] += 1
                break
            if symbol.startswith(NIO) or "[kernel" in frame:
                break
        counts[kind] += 1
    return {
        "samples": total,
        "shares": {k: counts[k] / total for k in ("kernel", "nio", "own")} if total else {},
        "own": [[name, n / total] for name, n in own.most_common(15)] if total else [],
    }


def demangled(names):
    """Short readable names through swift-demangle when it is there; the mangled names otherwise."""
    import shutil
    import subprocess
    tool = shutil.which("swift-demangle")
    if not tool or not names:
        return names
    out = subprocess.run([tool, "--simplified"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return [re.sub(r"\(.*", "", line)[:70] if line else name for line, name in zip(out, names)]


if __name__ == "__main__":
    result = split(open(sys.argv[1]).read())
    names = demangled([name for name, _ in result["own"]])
    result["own"] = [[name, share] for name, (_, share) in zip(names, result["own"])]
    print(json.dumps(result))
