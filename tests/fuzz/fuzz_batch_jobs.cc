// libFuzzer target: a batch file of JSON job lines as `paddock batch FILE` and paddock-load read it
// (tools/cli/batch_reader.h, job_json.h). Nothing may crash or throw; a line comes back either as
// a job that schemas::validate accepts, with a job id unique in the batch, or as an error that
// says why; an accepted job survives job_to_json and job_from_json unchanged.
#include <cstddef>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>

#include "batch_reader.h"
#include "job_json.h"
#include "paddock/schemas/codec.h"

namespace cli = paddock::cli;
namespace sc = paddock::schemas;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  cli::BatchReader reader(in, "fuzz");
  std::set<std::string> ids;
  size_t last_line = 0;
  while (auto line = reader.next()) {
    if (line->line_no <= last_line) __builtin_trap();
    last_line = line->line_no;
    if (!line->job) {
      if (line->error.empty()) __builtin_trap();
      continue;
    }
    const sc::JobRequest& job = *line->job;
    if (sc::validate(job)) __builtin_trap();
    if (!ids.insert(job.job_id).second) __builtin_trap();
    const auto again = cli::job_from_json(cli::job_to_json(job));
    if (!again || !(*again == job)) __builtin_trap();
  }
  return 0;
}
