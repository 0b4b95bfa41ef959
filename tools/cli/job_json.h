// JSON <-> job messages, for batch files (`paddock batch FILE`) and `--json` output.
//
// A job is one JSON object with the JobRequest field names of schemas/PROTOCOL.md. Byte fields
// (stdin, file data; stdout and stderr on output) are a JSON string when the bytes are UTF-8 and
// {"base64": "..."} otherwise (input accepts either form for any bytes). Unknown fields are an
// error, so that a typo ("timeout" for "timeout_ms") is caught instead of silently ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "paddock/base/expected.h"
#include "paddock/schemas/messages.h"

namespace paddock::cli {

struct FieldError {
  std::string field;  // "argv[1]", "egress[0].ports[2].first"; empty when the whole line is bad
  std::string reason;
  std::string message() const { return field.empty() ? reason : field + ": " + reason; }
};

// A job, or the field that keeps a line from being one.
using ParsedJob = base::Expected<schemas::JobRequest, FieldError>;

// Parses one line of a batch file. A missing job_id leaves job->job_id empty (the caller makes
// one up). Types and unknown fields are checked here; ranges and formats are schemas::validate's.
ParsedJob job_from_json_text(std::string_view text);
ParsedJob job_from_json(const nlohmann::json& j);

// The inverse of job_from_json: every field, defaults included.
nlohmann::ordered_json job_to_json(const schemas::JobRequest& job);

// One `paddock batch --json` output line: status "ok" for a RESULT, "error" for an ERROR.
nlohmann::ordered_json result_to_json(const schemas::JobResult& r);
nlohmann::ordered_json error_to_json(const schemas::JobError& e);

// A JSON string if `bytes` is valid UTF-8, else {"base64": "..."}.
nlohmann::ordered_json bytes_to_json(std::string_view bytes);

// nlohmann's dump() with invalid UTF-8 replaced rather than thrown on (messages come from peers).
std::string dump_line(const nlohmann::ordered_json& j);

}  // namespace paddock::cli
