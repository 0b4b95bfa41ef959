#!/usr/bin/python3
"""FAKE jailer: a TEST DOUBLE of Firecracker's jailer, for tests only. Needs root.

It parses the real jailer's command line as Firecracker's docs/jailer.md documents it, strictly
(an unknown, repeated or malformed flag is an error, as is anything the real jailer refuses), then
checks that the chroot the provider prepared is one the real jailer and a jailed Firecracker can
use, and then does, in the documented order, what the real jailer does that a test can do:

  close every fd but 0-2; empty the environment (the fake keeps its own FAKE_* knobs only);
  create <chroot_base>/<exec_file_name>/<id>/root (fine if it exists) and copy the exec file in;
  set the resource limits (no-file 2048 by default); create the cgroups named by --cgroup below
  <controller mount>/<parent_cgroup>/<id>, write their values and move itself in; a new mount
  namespace, / private, the chroot bound on itself, pivot_root, the old root detached, chroot;
  mknod /dev/net/tun and /dev/kvm (which fails if they exist, as the real jailer's does) owned by
  uid:gid; the chroot owned by uid:gid; join --netns; --daemonize: setsid and stdio to /dev/null;
  --new-pid-ns: a child in a new pid namespace, its pid written to /<exec_file_name>.pid, and the
  jailer exits; the child drops to gid and uid and execs /<exec_file_name> --id=<id>
  --start-time-us=N --start-time-cpu-us=N and the arguments after `--`.

What it adds that the real jailer does not (the exec file here is a python script, the fake
Firecracker, and a static Firecracker needs none of it): inside its own mount namespace only, /usr
is bound read-only into the chroot with the usual top-level links (lib, lib64, bin), a procfs is
mounted at /proc and a /dev/null made, and every path in $FAKE_JAILER_BIND (':'-separated) is
bound at the same path (the spec, the request log's directory and the guest agent binary the fake
Firecracker uses). They vanish with the namespace; the links and empty mount points stay in the
chroot until the provider removes it.

On any failure it prints one line `fake_jailer: <what>: <why>` to stderr and exits 1 (the real
jailer's errors differ in wording).
"""
import ctypes
import os
import re
import shutil
import stat
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64

libc = ctypes.CDLL(None, use_errno=True)

VALUED = {"--id", "--exec-file", "--uid", "--gid", "--parent-cgroup", "--cgroup-version",
          "--cgroup", "--chroot-base-dir", "--netns", "--resource-limit"}
REPEATABLE = {"--cgroup", "--resource-limit"}
SWITCHES = {"--daemonize", "--new-pid-ns"}


class Fail(Exception):
    pass


def check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise Fail(f"{what}: {os.strerror(e)}")


def parse(argv):
    """The real jailer's flags; the arguments after `--` go to Firecracker."""
    opts = {"--cgroup": [], "--resource-limit": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            opts["extra"] = argv[i + 1:]
            break
        if "=" in a and a.split("=", 1)[0] in VALUED:
            raise Fail(f"argument {a}: the jailer takes '--flag value', not '--flag=value'")
        if a in SWITCHES:
            if a in opts:
                raise Fail(f"argument {a}: given twice")
            opts[a] = True
            i += 1
            continue
        if a not in VALUED:
            raise Fail(f"argument {a!r}: unknown (docs/jailer.md lists the jailer's flags)")
        if i + 1 >= len(argv):
            raise Fail(f"argument {a}: needs a value")
        v = argv[i + 1]
        if a in REPEATABLE:
            opts[a].append(v)
        elif a in opts:
            raise Fail(f"argument {a}: given twice")
        else:
            opts[a] = v
        i += 2
    opts.setdefault("extra", [])
    for required in ("--id", "--exec-file", "--uid", "--gid"):
        if required not in opts:
            raise Fail(f"argument {required}: required")
    return opts


def validate(o):
    jail_id = o["--id"]
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", jail_id):
        raise Fail(f"--id {jail_id!r}: not 1-64 alphanumerics and hyphens")
    exec_file = o["--exec-file"]
    if not os.path.isabs(exec_file) or not os.path.isfile(exec_file):
        raise Fail(f"--exec-file {exec_file!r}: not an existing file's absolute path")
    if "firecracker" not in os.path.basename(exec_file):
        raise Fail(f"--exec-file {exec_file!r}: the file name must include 'firecracker'")
    for flag in ("--uid", "--gid"):
        if not re.fullmatch(r"[0-9]{1,10}", o[flag]) or int(o[flag]) > 0xFFFFFFFE:
            raise Fail(f"{flag} {o[flag]!r}: not a uid/gid")
    base = o.get("--chroot-base-dir", "/srv/jailer")
    if not os.path.isabs(base):
        raise Fail(f"--chroot-base-dir {base!r}: not an absolute path")
    version = o.get("--cgroup-version", "1")
    if version not in ("1", "2"):
        raise Fail(f"--cgroup-version {version!r}: 1 or 2")
    parent = o.get("--parent-cgroup", os.path.basename(exec_file))
    if parent.startswith("/") or ".." in parent.split("/") or "" in parent.split("/"):
        raise Fail(f"--parent-cgroup {parent!r}: not a relative path")
    for c in o["--cgroup"]:
        if not re.fullmatch(r"[a-z_0-9]+\.[a-z_0-9.]+=[^\n=]+", c):
            raise Fail(f"--cgroup {c!r}: not <cgroup_file>=<value>")
    for r in o["--resource-limit"]:
        m = re.fullmatch(r"(fsize|no-file)=([0-9]+)", r)
        if not m:
            raise Fail(f"--resource-limit {r!r}: not fsize=N or no-file=N")
    if "--netns" in o and not os.path.exists(o["--netns"]):
        raise Fail(f"--netns {o['--netns']!r}: no such namespace handle")
    return base, version, parent


def check_chroot(root, uid, gid, exec_name):
    """What the provider must have prepared: only its files, hard-linked in, readable and not
    writable by the jail's user; the metrics FIFO owned by it; no device node (the jailer's mknod
    fails on one that exists), socket, link or directory."""
    if not os.path.isdir(root):
        return  # the jailer creates it
    st = os.lstat(root)
    if st.st_uid != uid or st.st_gid != gid:
        raise Fail(f"chroot {root}: owned by {st.st_uid}:{st.st_gid}, not the jail's {uid}:{gid}")
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        st = os.lstat(path)
        mode = st.st_mode
        if name in ("dev", exec_name):
            raise Fail(f"chroot {path}: made by the jailer, must not exist before it runs")
        if stat.S_ISFIFO(mode):
            if st.st_uid != uid or not mode & stat.S_IWUSR:
                raise Fail(f"chroot FIFO {path}: not writable by its owner {uid}")
            continue
        if not stat.S_ISREG(mode):
            raise Fail(f"chroot {path}: not a regular file or FIFO (mode {oct(mode)})")
        if st.st_nlink < 2:
            raise Fail(f"chroot {path}: not hard-linked (link count 1)")
        owner_writes = st.st_uid == uid and mode & stat.S_IWUSR
        group_writes = st.st_gid == gid and mode & stat.S_IWGRP
        if owner_writes or group_writes or mode & stat.S_IWOTH:
            raise Fail(f"chroot {path}: the jail's user could write it (a hard link shares it)")
        readable = (st.st_uid == uid and mode & stat.S_IRUSR) or \
            (st.st_gid == gid and mode & stat.S_IRGRP) or mode & stat.S_IROTH
        if not readable:
            raise Fail(f"chroot {path}: the jail's user cannot read it (mode {oct(mode)})")


def controller_mounts():
    """v1: controller -> mount point, from /proc/mounts (as the real jailer finds them)."""
    out = {}
    with open("/proc/mounts") as f:
        for line in f:
            dev, point, fstype, options = line.split()[:4]
            if fstype == "cgroup":
                for opt in options.split(","):
                    out.setdefault(opt, point)
            elif fstype == "cgroup2":
                out.setdefault("<unified>", point)
    return out


def setup_cgroups(version, parent, jail_id, cgroups):
    if not cgroups:
        return
    mounts = controller_mounts()
    made = {}
    for c in cgroups:
        file, value = c.split("=", 1)
        controller = file.split(".", 1)[0]
        base = mounts.get("<unified>") if version == "2" else mounts.get(controller)
        if base is None:
            raise Fail(f"--cgroup {c}: no cgroup v{version} mount with controller {controller}")
        if version == "2":
            # Controllers are delegated level by level from the root.
            level = base
            for part in parent.split("/"):
                with open(os.path.join(level, "cgroup.subtree_control"), "w") as f:
                    f.write(f"+{controller}")
                level = os.path.join(level, part)
                os.makedirs(level, exist_ok=True)
            with open(os.path.join(level, "cgroup.subtree_control"), "w") as f:
                f.write(f"+{controller}")
        d = os.path.join(base, parent, jail_id)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, file), "w") as f:
            f.write(value)
        made[d] = True
    for d in made:
        with open(os.path.join(d, "cgroup.procs" if version == "2" else "tasks"), "w") as f:
            f.write(str(os.getpid()))


def mount(src, target, fstype, flags, what):
    check(libc.mount(src.encode() if src else None, target.encode(),
                     fstype.encode() if fstype else None, ctypes.c_ulong(flags), None), what)


def test_double_extras(root):
    """Not the real jailer's: what the python fake Firecracker needs in the chroot."""
    os.makedirs(os.path.join(root, "usr"), exist_ok=True)
    mount("/usr", os.path.join(root, "usr"), None, MS_BIND | MS_REC, "bind /usr")
    mount(None, os.path.join(root, "usr"), None,
          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "remount /usr read-only")
    for top in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink("/" + top) and not os.path.lexists(os.path.join(root, top)):
            os.symlink(os.readlink("/" + top), os.path.join(root, top))
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV, "mount /proc")
    for path in filter(None, os.environ.get("FAKE_JAILER_BIND", "").split(":")):
        inside = root + path
        if os.path.isdir(path):
            os.makedirs(inside, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            open(inside, "a").close()
        mount(path, inside, None, MS_BIND, f"bind {path}")


def enter_chroot(root):
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_PRIVATE | MS_REC, "make / private")
    mount(root, root, None, MS_BIND, f"bind {root} on itself")
    test_double_extras(root)
    os.makedirs(os.path.join(root, "old_root"), exist_ok=True)
    os.chdir(root)
    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"old_root"), "pivot_root")
    check(libc.umount2(b"old_root", MNT_DETACH), "umount old_root")
    os.rmdir("old_root")
    os.chroot(".")
    os.chdir("/")


def make_devices(uid, gid):
    os.makedirs("/dev/net", exist_ok=True)
    for path, major, minor in (("/dev/net/tun", 10, 200), ("/dev/kvm", 10, 232)):
        try:
            os.mknod(path, stat.S_IFCHR | stat.S_IRUSR | stat.S_IWUSR, os.makedev(major, minor))
        except OSError as e:
            raise Fail(f"mknod {path}: {e.strerror}")
        os.chown(path, uid, gid)
    # Test double only (see the module's docstring).
    os.mknod("/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod("/dev/null", 0o666)


def main(argv):
    o = parse(argv[1:])
    base, version, parent = validate(o)
    jail_id, exec_file = o["--id"], o["--exec-file"]
    uid, gid = int(o["--uid"]), int(o["--gid"])
    exec_name = os.path.basename(exec_file)
    os.closerange(3, 65536)
    knobs = {k: v for k, v in os.environ.items() if k.startswith("FAKE_")}
    os.environ.clear()
    os.environ.update(knobs)
    root = os.path.join(base, exec_name, jail_id, "root")
    check_chroot(root, uid, gid, exec_name)
    os.makedirs(root, exist_ok=True)
    shutil.copy(exec_file, os.path.join(root, exec_name))
    import resource
    limits = {"no-file": 2048}
    for r in o["--resource-limit"]:
        name, value = r.split("=", 1)
        limits[name] = int(value)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["no-file"], limits["no-file"]))
    if "fsize" in limits:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
    # Cgroups before the chroot: their hierarchy is not visible from inside it.
    setup_cgroups(version, parent, jail_id, o["--cgroup"])
    if "--netns" in o:
        netns_fd = os.open(o["--netns"], os.O_RDONLY)  # opened before the host's paths are gone
    enter_chroot(root)
    make_devices(uid, gid)
    os.chown("/", uid, gid)
    if "--netns" in o:
        check(libc.setns(netns_fd, CLONE_NEWNET), f"setns {o['--netns']}")
        os.close(netns_fd)
    if o.get("--daemonize"):
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    if o.get("--new-pid-ns"):
        check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        child = os.fork()
        if child != 0:
            with open(f"/{exec_name}.pid", "w") as f:
                f.write(str(child))
            return 0
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    now_us = int(time.time() * 1e6)
    args = [f"/{exec_name}", f"--id={jail_id}", f"--start-time-us={now_us}",
            f"--start-time-cpu-us={int(time.process_time() * 1e6)}"] + o["extra"]
    os.execv(args[0], args)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Fail, OSError) as e:
        print(f"fake_jailer: {e}", file=sys.stderr)
        sys.exit(1)
