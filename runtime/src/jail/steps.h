// paddock-jailer's steps, in the order they run (runtime/README.md "The jail"). Each returns a
// Jailer error "step <name>: <path>: <OS error>". Only the jailer process calls these: several
// change the calling process for good (namespaces, root, credentials).
#pragma once

#include "paddock/runtime/jailer.h"

namespace paddock::runtime::jail::steps {

// Everything inherited that is not 0-2 or spec.keep_fds is closed; the environment is emptied.
Status sanitize_process(const JailSpec& spec);
// <base>/qemu/<id>/root, new (an existing one is an error), owned by the jail's user; the
// spec's files hard-linked into it (copied across filesystems), each root's and not writable by
// the jail's user.
Status make_chroot(const JailSpec& spec);
// The cgroup(s), the limits written, this process moved in (its VMM child inherits them).
Status make_cgroup(const JailSpec& spec);
// Joins spec.netns, or a new empty network namespace when none is given.
Status join_netns(const JailSpec& spec);
// New mount, ipc and uts namespaces (the pid namespace comes with the fork in run()).
Status unshare_namespaces(const JailSpec& spec);
// The chroot becomes "/" (pivot_root): the read-only binds and a /dev tmpfs with only the nodes
// QEMU needs; nothing of the host's tree stays reachable.
Status pivot_into_chroot(const JailSpec& spec);
// Open files, file size, no core dumps (a core would hold guest memory).
Status set_rlimits(const JailSpec& spec);
// No supplementary groups, then gid, then uid; checked.
Status drop_privileges(const JailSpec& spec);

// Runs every step, forks the VMM as pid 1 of a new pid namespace, and stays as its parent:
// forwards SIGTERM/SIGINT/SIGHUP, and exits as the VMM did. Returns only on failure (an exit
// status, the error already written to stderr as "paddock-jailer: <error>").
int run(const JailSpec& spec);

}  // namespace paddock::runtime::jail::steps
