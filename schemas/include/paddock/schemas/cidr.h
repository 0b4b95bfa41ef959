// The one reading of an egress rule's `cidr` (PROTOCOL.md, JobRequest `egress`): "a.b.c.d" (a
// single host, /32) or "a.b.c.d/n", four decimal octets 0-255 without leading zeros, a prefix
// 0-32 without a leading zero, and no bit set past the prefix ("10.0.0.1/8" is refused: a rule
// means what it says). The codec's validate() refuses at SUBMIT exactly what the worker's runtime
// (runtime/src/net/network.cc, parse_cidr) refuses, because both call this: a client's mistake is
// never found first on a worker.
//
// Header-only and pure (no allocation but the reason text), so that the runtime shares it without
// linking the codec.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace paddock::schemas {

struct Ipv4Cidr {
  uint32_t address = 0;  // host byte order
  uint8_t prefix = 32;
};

enum class CidrProblem : uint8_t {
  kNone,
  kShape,     // not <ipv4>[/<prefix>]: other characters, an empty part, "/08", two slashes
  kAddress,   // not four octets 0-255 without leading zeros
  kPrefix,    // prefix over 32
  kHostBits,  // bits set past the prefix; `cidr` is then the masked network
};

struct CidrParse {
  CidrProblem problem = CidrProblem::kNone;
  Ipv4Cidr cidr;
};

inline uint32_t ipv4_mask(uint8_t prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

inline std::string ipv4_str(uint32_t address) {
  return std::to_string(address >> 24) + "." + std::to_string(address >> 16 & 255) + "." +
         std::to_string(address >> 8 & 255) + "." + std::to_string(address & 255);
}

inline CidrParse parse_ipv4_cidr(std::string_view text) {
  CidrParse out;
  size_t slashes = 0;
  for (const char c : text) {
    if (c == '/') {
      ++slashes;
    } else if ((c < '0' || c > '9') && c != '.') {
      out.problem = CidrProblem::kShape;
      return out;
    }
  }
  const size_t slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  if (addr.empty() || slashes > 1) {
    out.problem = CidrProblem::kShape;
    return out;
  }
  uint32_t address = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (addr.empty() || addr.front() != '.') {
        out.problem = CidrProblem::kAddress;
        return out;
      }
      addr.remove_prefix(1);
    }
    size_t digits = 0;
    unsigned value = 0;
    while (digits < addr.size() && addr[digits] >= '0' && addr[digits] <= '9' && digits < 4) {
      value = value * 10 + static_cast<unsigned>(addr[digits] - '0');
      ++digits;
    }
    if (digits == 0 || digits > 3 || (digits > 1 && addr[0] == '0') || value > 255) {
      out.problem = CidrProblem::kAddress;
      return out;
    }
    address = address << 8 | value;
    addr.remove_prefix(digits);
  }
  if (!addr.empty()) {
    out.problem = CidrProblem::kAddress;
    return out;
  }
  unsigned prefix = 32;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.find('.') != std::string_view::npos || (p.size() > 1 && p[0] == '0')) {
      out.problem = CidrProblem::kShape;
      return out;
    }
    if (p.size() > 2) {
      out.problem = CidrProblem::kPrefix;
      return out;
    }
    prefix = 0;
    for (const char c : p) prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    if (prefix > 32) {
      out.problem = CidrProblem::kPrefix;
      return out;
    }
  }
  out.cidr.prefix = static_cast<uint8_t>(prefix);
  out.cidr.address = address & ipv4_mask(out.cidr.prefix);
  if (out.cidr.address != address) out.problem = CidrProblem::kHostBits;
  return out;
}

// The reason a CIDR is refused, as the codec words it (without the text, which may be anything).
inline std::string cidr_problem_text(const CidrParse& p) {
  switch (p.problem) {
    case CidrProblem::kNone:
      return "";
    case CidrProblem::kShape:
      return "is not <ipv4> or <ipv4>/<prefix>";
    case CidrProblem::kAddress:
      return "is not an IPv4 address (four octets 0-255, no leading zero)";
    case CidrProblem::kPrefix:
      return "prefix length must be 0..32";
    case CidrProblem::kHostBits:
      return "has bits set past its /" + std::to_string(p.cidr.prefix) + " prefix (did you mean " +
             ipv4_str(p.cidr.address) + "/" + std::to_string(p.cidr.prefix) + "?)";
  }
  return "";
}

}  // namespace paddock::schemas
