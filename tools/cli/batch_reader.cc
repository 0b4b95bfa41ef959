#include "batch_reader.h"

#include <algorithm>

#include "job_json.h"
#include "paddock/schemas/codec.h"

namespace paddock::cli {

BatchReader::BatchReader(std::istream& in, std::string id_prefix)
    : in_(in), id_prefix_(std::move(id_prefix)) {}

std::optional<BatchLine> BatchReader::next() {
  std::string text;
  while (std::getline(in_, text)) {
    ++line_no_;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (std::all_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\t'; }))
      continue;

    BatchLine line;
    line.line_no = line_no_;
    ParsedJob parsed = job_from_json_text(text);
    if (!parsed) {
      line.error = parsed.error().message();
      return line;
    }
    auto& job = *parsed;
    if (job.job_id.empty()) job.job_id = id_prefix_ + "-" + std::to_string(line_no_);
    if (auto err = schemas::validate(job)) {
      line.error = err->message();
      return line;
    }
    const auto [it, fresh] = seen_.emplace(job.job_id, line_no_);
    if (!fresh) {
      line.error = "job_id: '" + job.job_id + "' is already used by line " +
                   std::to_string(it->second) + " (job ids must be unique within a batch)";
      return line;
    }
    line.job = std::move(job);
    return line;
  }
  return std::nullopt;
}

}  // namespace paddock::cli
