// Files in and out of a job, under its working directory. Paths come from the protocol decoder
// (relative, no '..', '.' or empty parts); every component is opened with O_NOFOLLOW, so a symlink
// a job left behind cannot lead a later write or read outside the directory.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "paddock/agent/protocol.h"

namespace paddock::guest {

// Writes each file (creating missing parent directories, mode 0755) under the directory `dirfd`,
// with its mode exactly (not narrowed by the umask). Empty on success, else which file and why.
std::string write_files(int dirfd, const std::vector<runtime::agent::FileIn>& files);

// Reads back each path that names a regular file: at most `per_file_cap` bytes of each and
// `total_cap` of all together, `truncated` set when there was more. Paths that do not exist or
// are not regular files are left out.
std::vector<runtime::agent::FileOut> read_files(int dirfd, const std::vector<std::string>& paths,
                                                size_t per_file_cap, size_t total_cap);

}  // namespace paddock::guest
