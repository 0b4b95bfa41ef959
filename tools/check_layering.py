#!/usr/bin/env python3
"""Keeps folders as libraries: nothing reaches into another library's private src/.

Each top-level library folder (LIBRARIES below) has a public include/ (headers named
"paddock/<name>/...") and private sources. This check fails when
  1. a C++ file of one library includes a private header of another (an #include "x.h" that does
     not resolve inside its own folder, or any "../" include);
  2. a CMake file outside tests/ names another folder's private sources or headers (a path into
     <lib>/src, <lib>/guest, ...) or climbs out of its folder with "../";
  3. a CMake file in tests/ names a library's private path directly instead of linking the
     library's *_internal target (the white-box door that only tests may use);
  4. a *_internal target is linked anywhere but in tests/ or its own folder.
Usage: tools/check_layering.py [REPO]           (exit 0: clean; 1: violations, listed)
       tools/check_layering.py --graph [REPO]   the dependency arrows between libraries, as
                                                their C++ includes (outside tests/) draw them
"""
import os
import re
import sys

LIBRARIES = ["base", "schemas", "wire", "client", "metrics", "agent", "runtime", "broker",
             "worker", "daemon", "tools"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
PUBLIC = re.compile(r"^paddock/([a-z_]+)/")


def repo_files(root):
    for top in LIBRARIES + ["tests", "cmake"]:
        base = os.path.join(root, top)
        for d, dirs, files in os.walk(base):
            dirs[:] = [x for x in dirs if x not in ("node_modules", "regressions", "vectors")]
            for f in files:
                yield os.path.join(d, f)
    yield os.path.join(root, "CMakeLists.txt")


def library_of(root, path):
    rel = os.path.relpath(path, root)
    top = rel.split(os.sep, 1)[0]
    return top if top in LIBRARIES else None


def public_header_exists(root, name):
    return any(os.path.isfile(os.path.join(root, lib, "include", name)) for lib in LIBRARIES)


def check_cpp(root, path, problems):
    lib = library_of(root, path)
    if lib is None:
        return
    libdir = os.path.join(root, lib)
    text = open(path, encoding="utf-8", errors="replace").read()
    for m in INCLUDE.finditer(text):
        name = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        where = f"{os.path.relpath(path, root)}:{line}"
        if ".." in name.split("/"):
            problems.append(f'{where}: #include "{name}" climbs out with ../')
            continue
        if PUBLIC.match(name):
            if not public_header_exists(root, name):
                problems.append(f'{where}: #include "{name}" is no library\'s public header')
            continue
        # A private include: it must resolve inside this library's folder (beside the file, or
        # under the library's src/).
        candidates = [os.path.join(os.path.dirname(path), name), os.path.join(libdir, "src", name),
                      os.path.join(libdir, name)]
        found = [c for c in candidates if os.path.isfile(c)]
        if not found:  # through one of the library's own include paths (e.g. tools/cli)
            found = [os.path.join(d, name) for d, _, _ in os.walk(libdir)
                     if os.path.isfile(os.path.join(d, name))]
        if not found:
            # Not in this library: another library's private header (reached through an include
            # path that CMake should not have given), or a generated one (not ours to judge).
            elsewhere = [f"{other}/{sub}/{name}" for other in LIBRARIES if other != lib
                         for sub in PRIVATE_DIRS
                         if os.path.isfile(os.path.join(root, other, sub, name))]
            if elsewhere:
                problems.append(f'{where}: #include "{name}" is private to {elsewhere[0]}')
            continue
        if not all(os.path.realpath(c).startswith(os.path.realpath(libdir) + os.sep) for c in found):
            problems.append(f'{where}: #include "{name}" reaches outside {lib}/')


# The folders of a library that are its own: everything but include/ (and the tools' scripts).
PRIVATE_DIRS = ["src", "guest", "cli", "load", "bench"]
PRIVATE_PATH = re.compile(r"\$\{(?:PROJECT_SOURCE_DIR|CMAKE_SOURCE_DIR)\}/([a-z_]+)/([A-Za-z_./-]+)")
INTERNAL = re.compile(r"\b(paddock_[a-z_]+_internal)\b")


def check_cmake(root, path, problems):
    rel = os.path.relpath(path, root)
    in_tests = rel.startswith("tests" + os.sep)
    own = library_of(root, path)
    text = open(path, encoding="utf-8").read()
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        where = f"{rel}:{n}"
        for m in PRIVATE_PATH.finditer(code):
            folder, rest = m.group(1), m.group(2)
            if folder in LIBRARIES and rest.split("/", 1)[0] in PRIVATE_DIRS:
                problems.append(f"{where}: names {folder}/{rest}, a private path of {folder}/"
                                + (" (link its *_internal target)" if in_tests else ""))
        if not in_tests and re.search(r"(^|[\s\"])\.\./", code):
            problems.append(f"{where}: climbs out of its folder with ../")
        for m in INTERNAL.finditer(code):
            target = m.group(1)
            defined_here = re.search(r"add_library\(\s*" + target + r"\b", text) is not None
            if not in_tests and not defined_here:
                problems.append(f"{where}: links {target}, which only tests may use")
    del own


def resolve(root, name, including_lib, including_path):
    """The file a quoted include names: a public header, or a private one found."""
    if PUBLIC.match(name):
        for lib in LIBRARIES:
            if os.path.isfile(os.path.join(root, lib, "include", name)):
                return os.path.join(root, lib, "include", name)
        return None
    beside = os.path.join(os.path.dirname(including_path), name)
    if os.path.isfile(beside):
        return beside
    for lib in [including_lib] + [x for x in LIBRARIES if x != including_lib]:
        for d, _, _ in os.walk(os.path.join(root, lib)):
            if os.path.isfile(os.path.join(d, name)):
                return os.path.join(d, name)
    return None


def unit_of(root, path):
    """The library a file belongs to; the guest agent (agent/guest, once runtime/guest) is a
    program of its own."""
    rel = os.path.relpath(path, root)
    for guest in ("agent/guest/", "runtime/guest/"):
        if rel.startswith(guest):
            return guest.rstrip("/")
    return library_of(root, path)


def graph(root):
    edges = {}
    for path in repo_files(root):
        rel = os.path.relpath(path, root)
        src = unit_of(root, path)
        if src is None or not path.endswith((".cc", ".h")) or rel.startswith("tests" + os.sep):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        for m in INCLUDE.finditer(text):
            target = resolve(root, m.group(1), library_of(root, path), path)
            dst = unit_of(root, target) if target else None
            if dst is None or dst == src:
                continue
            kind = "public" if PUBLIC.match(m.group(1)) else "PRIVATE"
            edges.setdefault(src, {}).setdefault(dst, set()).add(kind)
    for src in sorted(edges):
        arrows = ", ".join(d + ("" if k == {"public"} else " (reaches into its private headers)")
                           for d, k in sorted(edges[src].items()))
        print(f"{src} -> {arrows}")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--graph":
        return graph(os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else
                                     os.path.join(os.path.dirname(__file__), "..")))
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    problems = []
    for path in repo_files(root):
        base = os.path.basename(path)
        rel = os.path.relpath(path, root)
        if base.endswith((".cc", ".h")) and not rel.startswith("tests" + os.sep):
            check_cpp(root, path, problems)
        elif base == "CMakeLists.txt" or base.endswith(".cmake"):
            check_cmake(root, path, problems)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layering: {len(problems)} reach(es) into another library's private parts")
        return 1
    print("check_layering: every library keeps to its public include/ and its own src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
