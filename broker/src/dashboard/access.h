// Who may see the dashboard and its API (broker/README.md, "Dashboard"). Decided once, at start,
// from the HTTP server's address and the operator token:
//  - loopback, no token: served to whoever connects (the machine's own users);
//  - a token: served only to requests that carry it, as `Authorization: Bearer TOKEN` or in the
//    cookie that /login?token=TOKEN sets, on any address;
//  - not loopback, no token: not served at all (every dashboard route answers 403 saying why);
//    /metrics is not affected.
//
// Thread-safety: immutable after construction; any thread may call its const methods.
#pragma once

#include <string>
#include <string_view>

#include "paddock/base/expected.h"
#include "paddock/metrics/http_server.h"

namespace paddock::broker::dashboard {

// Compares in a time that depends on the lengths only, not on where the strings differ.
bool constant_time_equal(std::string_view a, std::string_view b);

// Reads an operator token file: one line, at least kMinTokenBytes of it after trimming
// whitespace. A Failure naming the file if it cannot be read, is readable by its group or others
// (as ssh refuses such a key), or holds too short a token.
base::Expected<std::string> read_token_file(const std::string& path);

class Access {
 public:
  static constexpr size_t kMinTokenBytes = 16;
  static constexpr const char* kCookie = "paddock_dashboard";

  // `token` "": none. `loopback`: the HTTP server listens on a loopback address only.
  Access(std::string token, bool loopback);

  enum class Verdict { kAllowed, kNeedsToken, kNotServed };
  Verdict check(const metrics::HttpRequest& request) const;
  bool token_matches(std::string_view candidate) const;
  bool served() const { return served_; }
  bool token_required() const { return !token_.empty(); }

 private:
  std::string token_;
  bool served_;
};

}  // namespace paddock::broker::dashboard
