#include "dashboard/access.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace paddock::broker::dashboard {

namespace {

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

// The value of cookie `name` in a Cookie header ("a=1; b=2"); "" if absent.
std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semi = header.find(';');
    std::string_view pair = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
  }
  return {};
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of `b` is looked at whatever `a` holds; a length mismatch only sets a bit.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0 && !b.empty();
}

base::Expected<std::string> read_token_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return base::fail("dashboard token file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return base::fail("dashboard token file " + path +
                      " is accessible by its group or others: chmod 600 it");
  }
  std::ifstream in(path);
  if (!in) return base::fail("dashboard token file " + path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::string token(trim(text.substr(0, text.find('\n'))));
  if (token.size() < Access::kMinTokenBytes) {
    return base::fail("dashboard token file " + path + ": the token (its first line) has " +
                      std::to_string(token.size()) + " characters; at least " +
                      std::to_string(Access::kMinTokenBytes) +
                      " are needed (e.g. "
                      "'head -c 24 /dev/urandom | base64')");
  }
  for (char c : token) {
    // What a cookie value and a header may carry as they are (RFC 6265's cookie-octet).
    if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\') {
      return base::fail("dashboard token file " + path +
                        ": the token may hold printable "
                        "ASCII only, without spaces, quotes, commas, semicolons or "
                        "backslashes");
    }
  }
  return token;
}

Access::Access(std::string token, bool loopback)
    : token_(std::move(token)), served_(loopback || !token_.empty()) {}

bool Access::token_matches(std::string_view candidate) const {
  return !token_.empty() && constant_time_equal(candidate, token_);
}

Access::Verdict Access::check(const metrics::HttpRequest& request) const {
  if (!served_) return Verdict::kNotServed;
  if (token_.empty()) return Verdict::kAllowed;
  const std::string auth = request.header("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() > kBearer.size() && auth.compare(0, kBearer.size(), kBearer) == 0 &&
      token_matches(trim(std::string_view(auth).substr(kBearer.size())))) {
    return Verdict::kAllowed;
  }
  for (auto [it, end] = request.headers.equal_range("cookie"); it != end; ++it) {
    if (token_matches(cookie_value(it->second, kCookie))) return Verdict::kAllowed;
  }
  return Verdict::kNeedsToken;
}

}  // namespace paddock::broker::dashboard

namespace paddock::broker {

base::Expected<std::string> read_dashboard_token(const std::string& path) {
  return dashboard::read_token_file(path);
}

}  // namespace paddock::broker
