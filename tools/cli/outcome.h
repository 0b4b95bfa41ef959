// How the CLI words a job's final answer: shared by submit, batch and cancel.
#pragma once

#include <string>

#include "paddock/schemas/messages.h"

namespace paddock::cli {

// The error's variant name; when the peer sent none, the name of its code ("Unknown" if new).
std::string variant_of(const schemas::JobError& e);

// "Jailer (code 11): jailer error: x", what `error: ...` lines print.
std::string describe_error(const schemas::JobError& e);

// "exit 0", "exit 3", "timed out", "killed for memory (guest OOM)", "signal 9".
std::string describe_result(const schemas::JobResult& r);

// The status `paddock submit` exits with for a RESULT: 124 when it timed out, 128+n when killed by
// signal n, else its exit code. Codes outside 0..255 (only the test double makes them) become 255.
int exit_status_of(const schemas::JobResult& r);

}  // namespace paddock::cli
