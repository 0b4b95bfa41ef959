// Reads a batch file: JSON lines, one job per line (job_json.h), blank lines skipped. Each line
// comes back as a checked job (types, then schemas::validate) or as the reason it is invalid, so
// that one bad line does not stop the others.
#pragma once

#include <istream>
#include <optional>
#include <string>
#include <unordered_map>

#include "paddock/schemas/messages.h"

namespace paddock::cli {

struct BatchLine {
  size_t line_no = 0;                      // 1-based
  std::optional<schemas::JobRequest> job;  // set when the line is a valid job
  std::string error;                       // "field: reason" otherwise
};

class BatchReader {
 public:
  // `id_prefix` names the jobs that have no job_id: "<id_prefix>-<line number>".
  BatchReader(std::istream& in, std::string id_prefix);

  // The next non-blank line, or nullopt at the end of the input.
  std::optional<BatchLine> next();

 private:
  std::istream& in_;
  std::string id_prefix_;
  size_t line_no_ = 0;
  std::unordered_map<std::string, size_t> seen_;  // job_id -> the line that used it first
};

}  // namespace paddock::cli
