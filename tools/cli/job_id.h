// Job ids the CLI makes up when the user gives none. They satisfy PROTOCOL.md's job_id rule
// (1-128 of [A-Za-z0-9._:-]).
#pragma once

#include <string>

namespace paddock::cli {

// `n` random lowercase hex digits (from std::random_device).
std::string random_hex(size_t n);

// "<prefix>-<16 random hex digits>", e.g. "cli-3f9a0c1d2e4b5a69".
std::string generate_job_id(const std::string& prefix);

}  // namespace paddock::cli
