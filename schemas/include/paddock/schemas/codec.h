// msgpack codec for the message types, on the bounded msgpack core (msgpack_core.h). Encoders
// cannot fail. Decoders are strict and bounded: msgpack unpack limits first (limits.h), then
// required fields, types and ranges. A decoder never
// throws; it returns a DecodeError naming the offending field ("argv[3]", "egress[0].cidr").
// Unknown map keys are ignored so that a newer peer may add optional fields within version 1.
//
// Text: msgpack str is UTF-8. Decoders refuse a str field or map key that is not valid UTF-8
// (naming it: "job_id: not valid UTF-8"); byte fields (stdin, stdout, stderr, file data) are bytes
// whether sent as bin or str. Encoders write every str field as valid UTF-8, replacing each
// invalid sequence by U+FFFD (a runtime message cut at its limit mid-character, say), so that
// whatever an encoder writes decodes; validate() refuses a request whose text is not UTF-8, so a
// request is never altered that way.
//
// Thread-safety: all functions are pure and may be called from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "paddock/schemas/decoded.h"
#include "paddock/schemas/messages.h"
#include "paddock/schemas/utf8.h"

namespace paddock::schemas {

// DecodeError and Decoded<T>: decoded.h (one convention for this codec and the guest agent's).

std::string encode(const JobRequest&);
std::string encode(const JobResult&);
std::string encode(const JobError&);
std::string encode(const JobDispatch&);
std::string encode(const Ready&);
std::string encode(const Credit&);
std::string encode(const WorkerStatus&);
std::string encode(const Accepted&);
std::string encode(const JobRef&);
std::string encode(const OutputChunk&);
// A JOB body around a request that is already encoded (the broker keeps each request as its
// submitter encoded it): the same bytes as encode(JobDispatch{attempt, queued_us, request}) when
// `encoded_request` is encode(request), without decoding or encoding the request again.
// REQUIRES: decode_job_request(encoded_request) succeeds.
// `tenant` ("" = none) is written only when set, as encode(JobDispatch) does.
std::string encode_job_dispatch(uint32_t attempt, uint64_t queued_us,
                                std::string_view encoded_request, std::string_view tenant = {});

Decoded<JobRequest> decode_job_request(std::string_view bytes);
Decoded<JobResult> decode_job_result(std::string_view bytes);
Decoded<JobError> decode_job_error(std::string_view bytes);
Decoded<JobDispatch> decode_job_dispatch(std::string_view bytes);
Decoded<Ready> decode_ready(std::string_view bytes);
Decoded<Credit> decode_credit(std::string_view bytes);
Decoded<WorkerStatus> decode_worker_status(std::string_view bytes);
Decoded<Accepted> decode_accepted(std::string_view bytes);
Decoded<JobRef> decode_job_ref(std::string_view bytes);
Decoded<OutputChunk> decode_output(std::string_view bytes);

// Semantic checks of a request (identifiers, ranges, paths, CIDRs). decode_job_request applies
// it; clients call it before sending so that a user sees the problem before the broker does.
std::optional<DecodeError> validate(const JobRequest&);

// An image name as JobRequest.image allows it: 1-64 of [a-z0-9._-].
bool valid_image_name(std::string_view name);
// A tenant name (limits.h, kMaxTenant): 1-64 of [A-Za-z0-9._-], not starting with '.'.
bool valid_tenant(std::string_view name);
// The image names of READY capabilities ("image:<name>"), valid and distinct, in their order.
std::vector<std::string> images_of(const std::vector<std::string>& capabilities);
// What a worker can commit, from READY capabilities "vcpus:<n>" and "mem_mib:<n>" (decimal, 1 to
// 2^31 - 1; the first valid one of each counts); 0 where it says nothing (no bound).
struct WorkerCapacity {
  uint32_t vcpus = 0;
  uint32_t mem_mib = 0;
};
WorkerCapacity capacity_of(const std::vector<std::string>& capabilities);

// Best effort: the job_id of a request too broken to decode, so its ERROR can name the job.
std::string peek_job_id(std::string_view bytes);

// Best effort: the job and attempt of a JOB body too broken to decode (a broker of another
// version, a bug), so that the worker can answer it with an ERROR and return its credit instead of
// dropping it. Reads the bytes in place up to `attempt` and `request.job_id`, whatever follows
// (a body over the frame limit too).
// nullopt unless both are there and the job_id is valid.
struct DispatchRef {
  std::string job_id;
  uint32_t attempt = 1;
  std::string tenant;  // "" when absent or not a valid name
};
std::optional<DispatchRef> peek_dispatch(std::string_view bytes);

// A body of a command whose body is "any map" (PING, echoed in PONG): within the unpack limits,
// one map, every map in it with string keys given once, and every str (keys included) valid UTF-8.
// nullopt when it is such a body, else why not ("body: ...").
std::optional<DecodeError> check_any_map(std::string_view bytes);

// valid_utf8(s): utf8.h.
// `s` as valid UTF-8 (invalid sequences replaced by U+FFFD) and at most `max_bytes` long, cut at
// a character boundary: for text built from outside bytes that must fit a str limit
// (JobError.message at kMaxMessage).
std::string utf8_prefix(std::string_view s, size_t max_bytes);

// Cuts a result to what one RESULT frame carries (limits.h, kMaxResultData): stdout, stderr and
// each file's data at `output_cap` bytes, then all of them together at kMaxResultData (stdout
// kept first, then stderr, then the files in order); whatever is cut gets its truncated flag. Every
// backend's result goes through it on the worker, so the rule is the same for all of them.
// A job with steps: each step's outcome after the job's own, in order, under one budget.
void fit_result(JobResult& result, uint32_t output_cap);
// The same with each step cut at its own output_cap (request.steps[i].output_cap).
void fit_result(JobResult& result, const JobRequest& request);

}  // namespace paddock::schemas
