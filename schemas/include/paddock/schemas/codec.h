// msgpack codec for the message types. Encoders cannot fail. Decoders are strict and bounded:
// msgpack unpack limits first (limits.h), then required fields, types and ranges. A decoder never
// throws; it returns a DecodeError naming the offending field ("argv[3]", "egress[0].cidr").
// Unknown map keys are ignored so that a newer peer may add optional fields within version 1.
//
// Thread-safety: all functions are pure and may be called from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "paddock/schemas/messages.h"

namespace paddock::schemas {

struct DecodeError {
  std::string field;   // dotted path of the offending field, or "body"/"frame"/"tag"/"command"
  std::string reason;  // what is wrong with it
  std::string message() const { return field + ": " + reason; }
};

// A decoded value or the reason it could not be decoded.
template <class T>
class Decoded {
 public:
  Decoded(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Decoded(DecodeError error) : error_(std::move(error)) {}  // NOLINT
  explicit operator bool() const { return value_.has_value(); }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const DecodeError& error() const { return error_; }

 private:
  std::optional<T> value_;
  DecodeError error_;
};

std::string encode(const JobRequest&);
std::string encode(const JobResult&);
std::string encode(const JobError&);
std::string encode(const JobDispatch&);
std::string encode(const Ready&);
std::string encode(const Credit&);
std::string encode(const WorkerStatus&);
std::string encode(const Accepted&);
std::string encode(const JobRef&);
// A JOB body around a request that is already encoded (the broker keeps each request as its
// submitter encoded it): the same bytes as encode(JobDispatch{attempt, queued_us, request}) when
// `encoded_request` is encode(request), without decoding or encoding the request again.
// REQUIRES: decode_job_request(encoded_request) succeeds.
std::string encode_job_dispatch(uint32_t attempt, uint64_t queued_us,
                                std::string_view encoded_request);

Decoded<JobRequest> decode_job_request(std::string_view bytes);
Decoded<JobResult> decode_job_result(std::string_view bytes);
Decoded<JobError> decode_job_error(std::string_view bytes);
Decoded<JobDispatch> decode_job_dispatch(std::string_view bytes);
Decoded<Ready> decode_ready(std::string_view bytes);
Decoded<Credit> decode_credit(std::string_view bytes);
Decoded<WorkerStatus> decode_worker_status(std::string_view bytes);
Decoded<Accepted> decode_accepted(std::string_view bytes);
Decoded<JobRef> decode_job_ref(std::string_view bytes);

// Semantic checks of a request (identifiers, ranges, paths, CIDRs). decode_job_request applies
// it; clients call it before sending so that a user sees the problem before the broker does.
std::optional<DecodeError> validate(const JobRequest&);

// An image name as JobRequest.image allows it: 1-64 of [a-z0-9._-].
bool valid_image_name(std::string_view name);
// The image names of READY capabilities ("image:<name>"), valid and distinct, in their order.
std::vector<std::string> images_of(const std::vector<std::string>& capabilities);

// Best effort: the job_id of a request too broken to decode, so its ERROR can name the job.
std::string peek_job_id(std::string_view bytes);

}  // namespace paddock::schemas
