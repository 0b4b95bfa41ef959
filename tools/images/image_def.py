#!/usr/bin/env python3
"""Paddock image definitions (tools/images/*.image): parse, check and apply them.

A definition is a small TOML file (agent/guest/IMAGE.md, "Image definitions"):

    format = 1
    name = "python"                  # [a-z0-9][a-z0-9._-]{0,31}
    kind = "rootfs"                  # "initramfs" (busybox only) or "rootfs"
    description = "..."              # optional
    [debian]                         # rootfs only
    suite = "bookworm"
    variant = "minbase"
    packages = ["python3", ...]      # Debian package names, installed with debootstrap --include
    [env]                            # rootfs only: the jobs' default environment
    PATH = "..."
    warmup = ["python3", "-c", "..."]  # rootfs only, optional: run in each template before
                                     # its snapshot (argv; 1-64 strings of at most 4096 bytes)
    [[files]]                        # rootfs only: extra files
    path = "/etc/x"                  # absolute, no '..', not under /proc /sys /dev /tmp /work
    mode = "0644"                    # octal, optional (0644)
    content = "..."                  # the text

Commands (used by tools/build-image.sh and tests/image/):
    check FILE            the definition, validated, as canonical JSON on stdout
    shell FILE            NAME, KIND, SUITE, VARIANT, PACKAGES (comma-separated) as shell lines
    stage FILE ROOT       writes the extra files and /etc/paddock/image.env into the tree ROOT
    index-sha256 FILE ARCH    the SHA256 of main/binary-ARCH/Packages.xz listed in an InRelease
    index-date FILE       the InRelease's Date as seconds since the epoch
    fetch URL OUT         downloads URL to OUT (honours http_proxy)

Errors go to stderr as "image_def: FILE: what is wrong", exit status 1.
"""
import email.utils
import json
import os
import re
import shlex
import sys
import tomllib
import urllib.request

FORMAT = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SUITES = {"bookworm"}  # the guest kernel and agent are built and measured on Debian 12
VARIANTS = {"minbase", "unpack"}  # unpack: the packages alone, dpkg-deb -x (test images)
KINDS = {"initramfs", "rootfs"}
MAX_PACKAGES = 200
MAX_FILES = 64
MAX_FILE_BYTES = 1 << 20
MAX_DEFINITION_BYTES = 64 << 10
MAX_WARMUP_ARGS = 64  # runtime/src/qemu/guest_image.h: kMaxWarmupArgs, kMaxWarmupArgBytes
MAX_WARMUP_ARG_BYTES = 4096
# Mounted over by the agent, or written by the builder itself.
RESERVED_DIRS = ("/proc", "/sys", "/dev", "/tmp", "/work", "/run")
ENV_FILE = "/etc/paddock/image.env"


class DefinitionError(Exception):
    pass


def _only(table, allowed, where):
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise DefinitionError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _string(value, where, limit=4096):
    if not isinstance(value, str):
        raise DefinitionError(f"{where}: must be a string")
    if "\0" in value or len(value) > limit:
        raise DefinitionError(f"{where}: NUL byte or longer than {limit}")
    return value


def parse(text):
    """The definition in `text`, validated, as a plain dict with every field present."""
    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise DefinitionError(f"longer than {MAX_DEFINITION_BYTES} bytes")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DefinitionError(f"not TOML: {e}") from None
    _only(doc, {"format", "name", "kind", "description", "warmup", "debian", "env", "files"},
          "top level")
    if doc.get("format") != FORMAT:
        raise DefinitionError(f"format: must be {FORMAT}")
    name = _string(doc.get("name"), "name")
    if not NAME_RE.match(name):
        raise DefinitionError(f"name: '{name}' is not 1-32 of [a-z0-9._-] starting alphanumeric")
    kind = _string(doc.get("kind"), "kind")
    if kind not in KINDS:
        raise DefinitionError(f"kind: '{kind}' is not one of {', '.join(sorted(KINDS))}")
    out = {"format": FORMAT, "name": name, "kind": kind,
           "description": _string(doc.get("description", ""), "description"),
           "warmup": [], "debian": None, "env": {}, "files": []}
    if kind == "initramfs":
        for key in ("warmup", "debian", "env", "files"):
            if key in doc:
                raise DefinitionError(f"{key}: an initramfs image takes none (its contents are "
                                      "tools/build-guest-image.sh's)")
        return out
    debian = doc.get("debian")
    if not isinstance(debian, dict):
        raise DefinitionError("debian: a rootfs image needs a [debian] table")
    _only(debian, {"suite", "variant", "packages"}, "debian")
    suite = _string(debian.get("suite"), "debian.suite")
    if suite not in SUITES:
        raise DefinitionError(f"debian.suite: '{suite}' is not one of {', '.join(sorted(SUITES))}")
    variant = _string(debian.get("variant", "minbase"), "debian.variant")
    if variant not in VARIANTS:
        raise DefinitionError(f"debian.variant: '{variant}' is not one of "
                              f"{', '.join(sorted(VARIANTS))}")
    packages = debian.get("packages", [])
    if not isinstance(packages, list) or len(packages) > MAX_PACKAGES:
        raise DefinitionError(f"debian.packages: must be a list of at most {MAX_PACKAGES}")
    for p in packages:
        if not isinstance(p, str) or not PACKAGE_RE.match(p):
            raise DefinitionError(f"debian.packages: '{p}' is not a Debian package name")
    if len(set(packages)) != len(packages):
        raise DefinitionError("debian.packages: a package is listed twice")
    out["debian"] = {"suite": suite, "variant": variant, "packages": sorted(packages)}
    env = doc.get("env", {})
    if not isinstance(env, dict):
        raise DefinitionError("env: must be a table")
    for k, v in env.items():
        if not ENV_KEY_RE.match(k):
            raise DefinitionError(f"env: '{k}' is not a variable name")
        if "\n" in _string(v, f"env.{k}"):
            raise DefinitionError(f"env.{k}: holds a newline")
    out["env"] = dict(sorted(env.items()))
    warmup = doc.get("warmup", [])
    if (not isinstance(warmup, list) or len(warmup) > MAX_WARMUP_ARGS
            or any(not isinstance(a, str) for a in warmup)):
        raise DefinitionError(f"warmup: must be a list of at most {MAX_WARMUP_ARGS} strings (argv)")
    for i, a in enumerate(warmup):
        if len(a.encode()) > MAX_WARMUP_ARG_BYTES or "\0" in a:
            raise DefinitionError(f"warmup[{i}]: over {MAX_WARMUP_ARG_BYTES} bytes or holds a NUL")
    if warmup and not warmup[0]:
        raise DefinitionError("warmup[0]: names no program")
    out["warmup"] = warmup
    files = doc.get("files", [])
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise DefinitionError(f"files: must be a list of at most {MAX_FILES} tables")
    seen = set()
    for i, f in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(f, dict):
            raise DefinitionError(f"{where}: must be a table")
        _only(f, {"path", "mode", "content"}, where)
        path = _string(f.get("path"), f"{where}.path")
        parts = path.split("/")
        if not path.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]):
            raise DefinitionError(f"{where}.path: '{path}' is not absolute and normal")
        if any(path == d or path.startswith(d + "/") for d in RESERVED_DIRS) or path == ENV_FILE:
            raise DefinitionError(f"{where}.path: '{path}' is mounted over or written by Paddock")
        if path in seen:
            raise DefinitionError(f"{where}.path: '{path}' is listed twice")
        seen.add(path)
        mode = _string(f.get("mode", "0644"), f"{where}.mode")
        if not re.match(r"^0?[0-7]{3}$", mode):
            raise DefinitionError(f"{where}.mode: '{mode}' is not an octal mode like 0644")
        content = _string(f.get("content"), f"{where}.content", MAX_FILE_BYTES)
        out["files"].append({"path": path, "mode": "0" + mode[-3:], "content": content})
    out["files"].sort(key=lambda f: f["path"])
    return out


def load(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(f"cannot read: {e}") from None
    return parse(text)


def stage(definition, root):
    """Writes the extra files and the environment file into the tree `root`."""
    def target(path):
        # Never follow a symlink out of the tree: each parent must be a real directory in it.
        full = os.path.join(root, path.lstrip("/"))
        parent = os.path.dirname(full)
        rel = os.path.relpath(parent, root)
        cur = root
        for part in ([] if rel == "." else rel.split("/")):
            cur = os.path.join(cur, part)
            if os.path.islink(cur):
                raise DefinitionError(f"{path}: {cur} is a symlink in the tree")
            if not os.path.exists(cur):
                os.mkdir(cur, 0o755)
        if os.path.islink(full) or os.path.isdir(full):
            raise DefinitionError(f"{path}: a symlink or directory in the tree")
        return full

    for f in definition["files"]:
        full = target(f["path"])
        with open(full, "w", encoding="utf-8") as out:
            out.write(f["content"])
        os.chmod(full, int(f["mode"], 8))
    full = target(ENV_FILE)
    with open(full, "w", encoding="utf-8") as out:
        out.write("# The jobs' default environment (tools/images/%s.image); the job's own env wins.\n"
                  % definition["name"])
        for k, v in definition["env"].items():
            out.write(f"{k}={v}\n")
    os.chmod(full, 0o644)


def index_sha256(inrelease_text, arch):
    """The SHA256 of main/binary-ARCH/Packages.xz in an InRelease: it fixes every version."""
    want = f"main/binary-{arch}/Packages.xz"
    in_sha = False
    for line in inrelease_text.splitlines():
        if line.startswith("SHA256:"):
            in_sha = True
            continue
        if in_sha and line.startswith(" "):
            fields = line.split()
            if len(fields) == 3 and fields[2] == want:
                return fields[0]
        elif in_sha:
            in_sha = False
    raise DefinitionError(f"no SHA256 line for {want} in the InRelease")


def index_date(inrelease_text):
    for line in inrelease_text.splitlines():
        if line.startswith("Date: "):
            return int(email.utils.parsedate_to_datetime(line[6:]).timestamp())
    raise DefinitionError("no Date line in the InRelease")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, arg = argv[1], argv[2]
    try:
        if cmd == "check" and len(argv) == 3:
            print(json.dumps(load(arg), sort_keys=True))
        elif cmd == "shell" and len(argv) == 3:
            d = load(arg)
            deb = d["debian"] or {"suite": "", "variant": "", "packages": []}
            for k, v in (("NAME", d["name"]), ("KIND", d["kind"]), ("SUITE", deb["suite"]),
                         ("VARIANT", deb["variant"]), ("PACKAGES", ",".join(deb["packages"]))):
                print(f"{k}={shlex.quote(v)}")
        elif cmd == "stage" and len(argv) == 4:
            stage(load(arg), argv[3])
        elif cmd == "index-sha256" and len(argv) == 4:
            with open(arg, encoding="utf-8", errors="replace") as f:
                print(index_sha256(f.read(), argv[3]))
        elif cmd == "index-date" and len(argv) == 3:
            with open(arg, encoding="utf-8", errors="replace") as f:
                print(index_date(f.read()))
        elif cmd == "fetch" and len(argv) == 4:
            try:
                with urllib.request.urlopen(arg, timeout=30) as r, open(argv[3], "wb") as out:
                    out.write(r.read())
            except OSError as e:
                raise DefinitionError(f"download failed: {e}") from None
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except DefinitionError as e:
        print(f"image_def: {arg}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
