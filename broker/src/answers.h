// The broker's own answers to submitters (PROTOCOL.md, "JobError"), built in one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/messages.h"

namespace paddock::broker {

schemas::JobError job_error(const std::string& job_id, schemas::JobCode code, std::string message,
                            uint32_t attempt = 0, bool retryable = false);
// The ERROR (or REJECTED, with `command`) message carrying `e`.
std::vector<std::string> error_message(const schemas::JobError& e,
                                       schemas::Command command = schemas::Command::kError);

}  // namespace paddock::broker
