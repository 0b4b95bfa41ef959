// Semantic validation of a JobRequest: everything a type check cannot see.
#include <algorithm>
#include <charconv>

#include "paddock/schemas/cidr.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"

namespace paddock::schemas {
namespace {

namespace L = limits;

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool all_of(std::string_view s, bool (*ok)(char)) { return std::all_of(s.begin(), s.end(), ok); }

bool job_id_char(char c) { return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-'; }
bool image_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}
bool env_char(char c) { return is_alnum(c) || c == '_'; }

// A relative path without "..", empty components or NUL: it cannot leave the job's directory.
std::optional<std::string> path_problem(std::string_view p) {
  if (p.empty()) return "must not be empty";
  if (p.size() > L::kMaxPath) return "longer than " + std::to_string(L::kMaxPath) + " bytes";
  if (p.front() == '/') return "must be relative";
  if (p.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (!valid_utf8(p)) return "not valid UTF-8";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return "has an empty, '.' or '..' component";
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<DecodeError> fail(std::string field, std::string reason) {
  return DecodeError{std::move(field), std::move(reason)};
}

// A command's argv, under `at` ("argv", "steps[2].argv").
std::optional<DecodeError> check_argv(const std::vector<std::string>& argv, const std::string& at) {
  if (argv.empty()) return fail(at, "must have at least one entry");
  if (argv.size() > L::kMaxArgv) return fail(at, "too many entries");
  size_t total = 0;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i].find('\0') != std::string::npos) {
      return fail(at + "[" + std::to_string(i) + "]", "contains a NUL byte");
    }
    total += argv[i].size();
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    if (!valid_utf8(argv[i])) return fail(at + "[" + std::to_string(i) + "]", "not valid UTF-8");
  }
  if (argv[0].empty()) return fail(at + "[0]", "must not be empty");
  if (total > L::kMaxArgvTotal) return fail(at, "larger than 256 KiB in total");
  return std::nullopt;
}

// An env map, under `at` ("env", "steps[2].env").
std::optional<DecodeError> check_env(const std::map<std::string, std::string>& env,
                                     const std::string& at) {
  if (env.size() > L::kMaxEnv) return fail(at, "too many entries");
  for (const auto& [k, v] : env) {
    if (k.empty() || k.size() > L::kMaxEnvKey || !all_of(k, env_char) ||
        (k[0] >= '0' && k[0] <= '9')) {
      return fail(at + "." + k, "name must match [A-Za-z_][A-Za-z0-9_]*");
    }
    if (v.find('\0') != std::string::npos) return fail(at + "." + k, "contains a NUL byte");
    if (!valid_utf8(v)) return fail(at + "." + k, "not valid UTF-8");
  }
  return std::nullopt;
}

// Paths to collect, under `at` ("files_out", "steps[2].files_out").
std::optional<DecodeError> check_files_out(const std::vector<std::string>& paths,
                                           const std::string& at) {
  if (paths.size() > L::kMaxFiles) return fail(at, "too many entries");
  for (size_t i = 0; i < paths.size(); ++i) {
    if (auto p = path_problem(paths[i])) return fail(at + "[" + std::to_string(i) + "]", *p);
  }
  return std::nullopt;
}

// A job's steps (its argv, stdin and files_out are the steps' then).
std::optional<DecodeError> check_steps(const JobRequest& r) {
  if (!r.argv.empty())
    return fail("argv", "must be empty in a job with steps (each step has its own)");
  if (!r.stdin_data.empty())
    return fail("stdin", "must be empty in a job with steps (each step has its own)");
  if (!r.files_out.empty()) {
    return fail("files_out", "must be empty in a job with steps (each step names its own)");
  }
  if (r.steps.size() > L::kMaxSteps) return fail("steps", "too many entries (at most 16)");
  size_t stdin_bytes = 0;
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const Step& st = r.steps[i];
    const std::string at = "steps[" + std::to_string(i) + "]";
    if (auto e = check_argv(st.argv, at + ".argv")) return e;
    if (auto e = check_env(st.env, at + ".env")) return e;
    stdin_bytes += st.stdin_data.size();
    if (st.timeout_ms < 1 || st.timeout_ms > L::kMaxTimeoutMs) {
      return fail(at + ".timeout_ms", "must be between 1 and 86400000");
    }
    if (st.output_cap > L::kMaxOutputCap) return fail(at + ".output_cap", "must be at most 8 MiB");
    if (auto e = check_files_out(st.files_out, at + ".files_out")) return e;
  }
  if (stdin_bytes > L::kMaxStdin) return fail("steps", "stdin larger than 8 MiB in all steps");
  return std::nullopt;
}

}  // namespace

std::optional<DecodeError> validate(const JobRequest& r) {
  if (r.job_id.empty()) return fail("job_id", "must not be empty");
  if (r.job_id.size() > L::kMaxJobId || !all_of(r.job_id, job_id_char)) {
    return fail("job_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  if (!valid_image_name(r.image)) {
    return fail("image", "must be 1-64 characters of [a-z0-9._-]");
  }
  if (r.steps.empty()) {
    if (auto e = check_argv(r.argv, "argv")) return e;
  } else if (auto e = check_steps(r)) {
    return e;
  }
  if (auto e = check_env(r.env, "env")) return e;
  if (r.stdin_data.size() > L::kMaxStdin) return fail("stdin", "larger than 8 MiB");
  if (r.files.size() > L::kMaxFiles) return fail("files", "too many entries");
  size_t file_bytes = 0;
  for (size_t i = 0; i < r.files.size(); ++i) {
    if (auto p = path_problem(r.files[i].path)) {
      return fail("files[" + std::to_string(i) + "].path", *p);
    }
    if (r.files[i].mode > 07777) return fail("files[" + std::to_string(i) + "].mode", "not a mode");
    file_bytes += r.files[i].data.size();
  }
  if (file_bytes > L::kMaxFilesTotal) return fail("files", "larger than 8 MiB in total");
  if (auto e = check_files_out(r.files_out, "files_out")) return e;
  if (r.vcpus < 1 || r.vcpus > L::kMaxVcpus) return fail("vcpus", "must be between 1 and 16");
  if (r.mem_mib < L::kMinMemMib || r.mem_mib > L::kMaxMemMib) {
    return fail("mem_mib", "must be between 64 and 65536");
  }
  if (r.timeout_ms < 1 || r.timeout_ms > L::kMaxTimeoutMs) {
    return fail("timeout_ms", "must be between 1 and 86400000");
  }
  if (r.output_cap > L::kMaxOutputCap) return fail("output_cap", "must be at most 8 MiB");
  if (r.egress.size() > L::kMaxEgressRules) return fail("egress", "too many rules");
  for (size_t i = 0; i < r.egress.size(); ++i) {
    const auto& rule = r.egress[i];
    const std::string at = "egress[" + std::to_string(i) + "]";
    // The runtime's own reading of a CIDR (schemas/cidr.h): what passes here, a worker takes.
    if (const auto c = parse_ipv4_cidr(rule.cidr); c.problem != CidrProblem::kNone) {
      return fail(at + ".cidr", cidr_problem_text(c));
    }
    const auto& proto = rule.protocol;
    if (proto != "tcp" && proto != "udp" && proto != "icmp" && proto != "any") {
      return fail(at + ".protocol", "must be tcp, udp, icmp or any");
    }
    if (rule.ports.size() > L::kMaxPortRanges) return fail(at + ".ports", "too many ranges");
    if ((proto == "icmp" || proto == "any") && !rule.ports.empty()) {
      return fail(at + ".ports", "ports apply to tcp and udp only");
    }
    for (size_t j = 0; j < rule.ports.size(); ++j) {
      const auto& pr = rule.ports[j];
      if (pr.first == 0 || pr.first > pr.last) {
        return fail(at + ".ports[" + std::to_string(j) + "]", "must satisfy 1 <= first <= last");
      }
    }
  }
  if (r.priority < L::kMinPriority || r.priority > L::kMaxPriority) {
    return fail("priority", "must be between -100 and 100");
  }
  if (r.tags.size() > L::kMaxTags) return fail("tags", "too many entries");
  for (const auto& [k, v] : r.tags) {
    if (k.empty() || k.size() > L::kMaxTagKey) return fail("tags", "key must be 1-64 bytes");
    if (!valid_utf8(k)) return fail("tags", "key is not valid UTF-8");
    if (!valid_utf8(v)) return fail("tags." + k, "not valid UTF-8");
    if (v.size() > L::kMaxTagValue) return fail("tags." + k, "longer than 256 bytes");
  }
  return std::nullopt;
}

bool valid_tenant(std::string_view name) {
  if (name.empty() || name.size() > L::kMaxTenant || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

bool valid_image_name(std::string_view name) {
  return !name.empty() && name.size() <= L::kMaxImage && all_of(name, image_char);
}

WorkerCapacity capacity_of(const std::vector<std::string>& capabilities) {
  WorkerCapacity out;
  auto number = [](std::string_view digits) -> uint32_t {
    uint32_t n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    const bool whole = ec == std::errc() && end == digits.data() + digits.size();
    return whole && n <= 0x7fffffff ? n : 0;
  };
  for (const auto& c : capabilities) {
    const std::string_view s = c;
    if (out.vcpus == 0 && s.rfind("vcpus:", 0) == 0) out.vcpus = number(s.substr(6));
    if (out.mem_mib == 0 && s.rfind("mem_mib:", 0) == 0) out.mem_mib = number(s.substr(8));
  }
  return out;
}

std::vector<std::string> images_of(const std::vector<std::string>& capabilities) {
  constexpr std::string_view kPrefix = "image:";
  std::vector<std::string> out;
  for (const auto& c : capabilities) {
    if (c.rfind(kPrefix, 0) != 0) continue;
    std::string name = c.substr(kPrefix.size());
    if (!valid_image_name(name) || std::find(out.begin(), out.end(), name) != out.end()) continue;
    out.push_back(std::move(name));
  }
  return out;
}

}  // namespace paddock::schemas
