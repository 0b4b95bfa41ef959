#include "agent/result_check.h"

#include <algorithm>
#include <set>
#include <string_view>

#include "os/peer_text.h"

namespace paddock::runtime::agent {
namespace {

// Cuts `data` to `max` bytes, then to what is left of `budget`, and takes that from the budget.
// True if anything was cut.
bool cap(std::string& data, size_t max, size_t& budget) {
  const size_t keep = std::min({data.size(), max, budget});
  budget -= keep;
  if (keep == data.size()) return false;
  data.resize(keep);
  data.shrink_to_fit();
  return true;
}

}  // namespace

std::string check_result(const ExecCommand& asked, ExecOutcome& outcome) {
  if (outcome.signal < 0 || outcome.signal > host_limits::kMaxSignal) {
    return "signal: " + std::to_string(outcome.signal) + " is not a signal (0.." +
           std::to_string(host_limits::kMaxSignal) + ")";
  }
  const std::set<std::string_view> wanted(asked.files_out.begin(), asked.files_out.end());
  std::set<std::string_view> seen;
  for (size_t i = 0; i < outcome.files.size(); ++i) {
    const std::string& path = outcome.files[i].path;
    const std::string where =
        "files[" + std::to_string(i) + "].path: '" + os::peer_text(path, limits::kMaxPath) + "' ";
    if (wanted.count(path) == 0) return where + "was not asked for";
    if (!seen.insert(path).second) return where + "comes twice";
  }
  size_t budget = host_limits::kMaxResultData;
  if (cap(outcome.stdout_data, asked.output_cap, budget)) outcome.stdout_truncated = true;
  if (cap(outcome.stderr_data, asked.output_cap, budget)) outcome.stderr_truncated = true;
  for (auto& f : outcome.files) {
    if (cap(f.data, asked.files_out_cap, budget)) f.truncated = true;
  }
  return {};
}

}  // namespace paddock::runtime::agent
