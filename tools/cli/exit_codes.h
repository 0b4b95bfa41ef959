// Exit statuses of the paddock CLI. `paddock submit` otherwise exits with the job's own status, so
// Paddock's outcomes use the sysexits.h numbers and the shell conventions (124 timeout, 128+n).
#pragma once

namespace paddock::cli::exit_code {

inline constexpr int kOk = 0;
inline constexpr int kInvalidLines = 1;    // batch: at least one line of the file was invalid
inline constexpr int kUsage = 64;          // EX_USAGE: bad command line
inline constexpr int kNoInput = 66;        // EX_NOINPUT: an input file cannot be read
inline constexpr int kUnavailable = 69;    // EX_UNAVAILABLE: the broker did not answer
inline constexpr int kTempFail = 75;       // EX_TEMPFAIL: REJECTED (QueueFull), try again later
inline constexpr int kTimedOut = 124;      // the job ran into its timeout_ms
inline constexpr int kPaddockError = 125;  // Paddock could not run the job (ERROR)
inline constexpr int kSignalBase = 128;    // the job was killed by signal n: 128 + n
inline constexpr int kInterrupted = 130;   // the CLI itself got a second Ctrl-C

}  // namespace paddock::cli::exit_code
