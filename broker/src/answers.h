// The broker's own answers to submitters (PROTOCOL.md, "JobError"), built in one place.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/messages.h"

namespace paddock::broker {

// `job_id`: the job's key (tenancy.h) or the submitter's job_id; the ERROR names the job_id.
schemas::JobError job_error(const std::string& job_id, schemas::JobCode code, std::string message,
                            uint32_t attempt = 0, bool retryable = false);
// Whether a request submitted again under a job_id is the one that job_id already names
// (PROTOCOL.md, "Client session": a job_id names one request). `body` is the new request's encoding
// and `decoded` its decoding; `held` the encoding kept of the first. The same bytes are the same
// request; otherwise they are compared decoded, so that key order, integer widths and unknown keys
// do not count. A kept request that does not decode (damaged) is not the same.
bool same_request(std::string_view body, const schemas::JobRequest& decoded, std::string_view held);
// ERROR 100's message for a job_id submitted again with another request.
std::string conflict_message(std::string_view job_id);
// That ERROR 100 as the answer to body `index` of a SUBMIT.
schemas::JobError conflict_error(std::string_view job_id, size_t index);

// The ERROR (or REJECTED, with `command`) message carrying `e`.
std::vector<std::string> error_message(const schemas::JobError& e,
                                       schemas::Command command = schemas::Command::kError);

}  // namespace paddock::broker
