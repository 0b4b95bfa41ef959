// The cases of the generated contract test (issue 20): JobRequest bodies at every limit of
// PROTOCOL.md's JobRequest table, one past it, and random combinations, each with whether it is
// within the limits. Shared by the memory-backend run
// (tests/integration/contract_generated_test.cc) and the QEMU sample
// (tests/vm/contract_qemu_test.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "paddock/schemas/limits.h"

namespace paddock::testing::contract {

using nlohmann::json;
namespace lim = paddock::schemas::limits;

using Rng = std::mt19937_64;

// One change to a valid request: sets a field (or adds one) and says whether the result is still
// within the limits.
struct Mutation {
  std::string name;
  bool valid;
  std::function<void(json&, Rng&)> apply;
};

inline std::string chars(size_t n, char c = 'a') { return std::string(n, c); }

inline json binary(size_t n) { return json::binary(std::vector<uint8_t>(n, 0x5a)); }

inline json env_of(size_t entries, size_t key_len = 8, size_t value_len = 1) {
  json env = json::object();
  for (size_t i = 0; i < entries; ++i) {
    std::string key = "K" + std::to_string(i);
    key += chars(key_len > key.size() ? key_len - key.size() : 0, 'k');
    env[key] = chars(value_len, 'v');
  }
  return env;
}

inline json files_of(size_t count, size_t bytes_each, size_t path_len = 8) {
  json files = json::array();
  for (size_t i = 0; i < count; ++i) {
    std::string path = "f" + std::to_string(i);
    path += chars(path_len > path.size() ? path_len - path.size() : 0, 'p');
    files.push_back({{"path", path}, {"mode", 0644}, {"data", binary(bytes_each)}});
  }
  return files;
}

inline json rules_of(size_t count, json rule) {
  return json(std::vector<json>(count, std::move(rule)));
}

inline json nested(size_t arrays) {
  json v = nullptr;
  for (size_t i = 0; i < arrays; ++i) v = json::array({v});
  return v;
}

// Every row of PROTOCOL.md's JobRequest table: at its limits (valid) and one past (invalid).
inline std::vector<Mutation> mutations() {
  std::vector<Mutation> m;
  auto add = [&](std::string name, bool valid, std::function<void(json&, Rng&)> f) {
    m.push_back({std::move(name), valid, std::move(f)});
  };
  add("image at 64", true, [](json& j, Rng&) { j["image"] = chars(lim::kMaxImage); });
  add("image 65", false, [](json& j, Rng&) { j["image"] = chars(lim::kMaxImage + 1); });
  add("image uppercase", false, [](json& j, Rng&) { j["image"] = "Default"; });
  add("argv 256 entries", true,
      [](json& j, Rng&) { j["argv"] = std::vector<std::string>(lim::kMaxArgv, "echo"); });
  add("argv 257 entries", false,
      [](json& j, Rng&) { j["argv"] = std::vector<std::string>(lim::kMaxArgv + 1, "echo"); });
  add("argv arg at 64 KiB, 256 KiB in all", true, [](json& j, Rng&) {
    j["argv"] = {"echo", chars(lim::kMaxArg), chars(lim::kMaxArg), chars(lim::kMaxArg),
                 chars(lim::kMaxArg - 4)};
  });
  add("argv arg 64 KiB + 1", false, [](json& j, Rng&) {
    j["argv"] = {"echo", chars(lim::kMaxArg + 1)};
  });
  add("argv 256 KiB + 1 in all", false, [](json& j, Rng&) {
    j["argv"] = {"echo", chars(lim::kMaxArg), chars(lim::kMaxArg), chars(lim::kMaxArg),
                 chars(lim::kMaxArg - 3)};
  });
  add("argv empty", false, [](json& j, Rng&) { j["argv"] = json::array(); });
  add("argv[0] empty", false, [](json& j, Rng&) { j["argv"] = {"", "x"}; });
  add("argv NUL", false, [](json& j, Rng&) { j["argv"] = {"echo", std::string("a\0b", 3)}; });
  add("argv not a list", false, [](json& j, Rng&) { j["argv"] = "true"; });
  add("argv integer", false, [](json& j, Rng&) { j["argv"] = {"echo", 7}; });
  add("env 256 entries", true, [](json& j, Rng&) { j["env"] = env_of(lim::kMaxEnv); });
  add("env 257 entries", false, [](json& j, Rng&) { j["env"] = env_of(lim::kMaxEnv + 1); });
  add("env key at 128", true, [](json& j, Rng&) { j["env"] = env_of(1, lim::kMaxEnvKey); });
  add("env key 129", false, [](json& j, Rng&) { j["env"] = env_of(1, lim::kMaxEnvKey + 1); });
  add("env key bad name", false, [](json& j, Rng&) { j["env"] = {{"1BAD", "x"}}; });
  add("env value at 32 KiB", true,
      [](json& j, Rng&) { j["env"] = env_of(1, 8, lim::kMaxEnvValue); });
  add("env value 32 KiB + 1", false,
      [](json& j, Rng&) { j["env"] = env_of(1, 8, lim::kMaxEnvValue + 1); });
  add("stdin at 8 MiB", true, [](json& j, Rng&) { j["stdin"] = binary(lim::kMaxStdin); });
  add("stdin 8 MiB + 1", false, [](json& j, Rng&) { j["stdin"] = binary(lim::kMaxStdin + 1); });
  add("files 64", true, [](json& j, Rng&) { j["files"] = files_of(lim::kMaxFiles, 1); });
  add("files 65", false, [](json& j, Rng&) { j["files"] = files_of(lim::kMaxFiles + 1, 1); });
  add("file path at 1024", true, [](json& j, Rng&) { j["files"] = files_of(1, 1, lim::kMaxPath); });
  add("file path 1025", false,
      [](json& j, Rng&) { j["files"] = files_of(1, 1, lim::kMaxPath + 1); });
  add("file path with ..", false, [](json& j, Rng&) {
    j["files"] = {{{"path", "a/../b"}, {"mode", 0644}, {"data", binary(1)}}};
  });
  add("file mode 07777", true, [](json& j, Rng&) {
    j["files"] = {{{"path", "m"}, {"mode", 07777}, {"data", binary(1)}}};
  });
  add("file mode 010000", false, [](json& j, Rng&) {
    j["files"] = {{{"path", "m"}, {"mode", 010000}, {"data", binary(1)}}};
  });
  add("files data at 8 MiB", true,
      [](json& j, Rng&) { j["files"] = files_of(2, lim::kMaxFilesTotal / 2); });
  add("files data 8 MiB + 1", false,
      [](json& j, Rng&) { j["files"] = files_of(1, lim::kMaxFilesTotal + 1); });
  add("files_out 64", true,
      [](json& j, Rng&) { j["files_out"] = std::vector<std::string>(lim::kMaxFiles, "out"); });
  add("files_out 65", false,
      [](json& j, Rng&) { j["files_out"] = std::vector<std::string>(lim::kMaxFiles + 1, "out"); });
  add("vcpus 1", true, [](json& j, Rng&) { j["vcpus"] = 1; });
  add("vcpus 16", true, [](json& j, Rng&) { j["vcpus"] = lim::kMaxVcpus; });
  add("vcpus 0", false, [](json& j, Rng&) { j["vcpus"] = 0; });
  add("vcpus 17", false, [](json& j, Rng&) { j["vcpus"] = lim::kMaxVcpus + 1; });
  add("mem_mib 64", true, [](json& j, Rng&) { j["mem_mib"] = lim::kMinMemMib; });
  add("mem_mib 65536", true, [](json& j, Rng&) { j["mem_mib"] = lim::kMaxMemMib; });
  add("mem_mib 63", false, [](json& j, Rng&) { j["mem_mib"] = lim::kMinMemMib - 1; });
  add("mem_mib 65537", false, [](json& j, Rng&) { j["mem_mib"] = lim::kMaxMemMib + 1; });
  add("timeout_ms 1", true, [](json& j, Rng&) { j["timeout_ms"] = 1; });
  add("timeout_ms at max", true, [](json& j, Rng&) { j["timeout_ms"] = lim::kMaxTimeoutMs; });
  add("timeout_ms 0", false, [](json& j, Rng&) { j["timeout_ms"] = 0; });
  add("timeout_ms max + 1", false,
      [](json& j, Rng&) { j["timeout_ms"] = uint64_t{lim::kMaxTimeoutMs} + 1; });
  add("output_cap 0", true, [](json& j, Rng&) { j["output_cap"] = 0; });
  add("output_cap 8 MiB", true, [](json& j, Rng&) { j["output_cap"] = lim::kMaxOutputCap; });
  add("output_cap 8 MiB + 1", false,
      [](json& j, Rng&) { j["output_cap"] = uint64_t{lim::kMaxOutputCap} + 1; });
  const json tcp = {{"cidr", "192.0.2.0/24"}, {"protocol", "tcp"}, {"ports", {{{"first", 443}}}}};
  add("egress 64 rules", true,
      [tcp](json& j, Rng&) { j["egress"] = rules_of(lim::kMaxEgressRules, tcp); });
  add("egress 65 rules", false,
      [tcp](json& j, Rng&) { j["egress"] = rules_of(lim::kMaxEgressRules + 1, tcp); });
  add("egress host bits past the prefix", false, [](json& j, Rng&) {
    j["egress"] = {{{"cidr", "10.0.0.1/8"}, {"protocol", "any"}}};
  });
  add("egress prefix 33", false, [](json& j, Rng&) {
    j["egress"] = {{{"cidr", "10.0.0.0/33"}, {"protocol", "any"}}};
  });
  add("egress bad protocol", false, [](json& j, Rng&) {
    j["egress"] = {{{"cidr", "10.0.0.0/8"}, {"protocol", "sctp"}}};
  });
  add("egress 32 port ranges", true, [](json& j, Rng&) {
    json ports = json::array();
    for (size_t i = 0; i < lim::kMaxPortRanges; ++i) ports.push_back({{"first", 1000 + i}});
    j["egress"] = {{{"cidr", "192.0.2.0/24"}, {"protocol", "udp"}, {"ports", ports}}};
  });
  add("egress 33 port ranges", false, [](json& j, Rng&) {
    json ports = json::array();
    for (size_t i = 0; i <= lim::kMaxPortRanges; ++i) ports.push_back({{"first", 1000 + i}});
    j["egress"] = {{{"cidr", "192.0.2.0/24"}, {"protocol", "udp"}, {"ports", ports}}};
  });
  add("egress ports on icmp", false, [](json& j, Rng&) {
    j["egress"] = {{{"cidr", "192.0.2.0/24"}, {"protocol", "icmp"}, {"ports", {{{"first", 1}}}}}};
  });
  add("egress port range backwards", false, [](json& j, Rng&) {
    j["egress"] = {{{"cidr", "192.0.2.0/24"},
                    {"protocol", "tcp"},
                    {"ports", {{{"first", 20}, {"last", 10}}}}}};
  });
  add("priority -100", true, [](json& j, Rng&) { j["priority"] = lim::kMinPriority; });
  add("priority 100", true, [](json& j, Rng&) { j["priority"] = lim::kMaxPriority; });
  add("priority -101", false, [](json& j, Rng&) { j["priority"] = lim::kMinPriority - 1; });
  add("priority 101", false, [](json& j, Rng&) { j["priority"] = lim::kMaxPriority + 1; });
  add("deadline long past", true, [](json& j, Rng&) { j["deadline_ms"] = 1; });
  add("tags 32", true, [](json& j, Rng&) {
    json t = json::object();
    for (size_t i = 0; i < lim::kMaxTags; ++i) t["t" + std::to_string(i)] = "v";
    j["tags"] = t;
  });
  add("tags 33", false, [](json& j, Rng&) {
    json t = json::object();
    for (size_t i = 0; i <= lim::kMaxTags; ++i) t["t" + std::to_string(i)] = "v";
    j["tags"] = t;
  });
  add("tag key at 64, value at 256", true, [](json& j, Rng&) {
    j["tags"] = {{chars(lim::kMaxTagKey, 'k'), chars(lim::kMaxTagValue)}};
  });
  add("tag key 65", false, [](json& j, Rng&) { j["tags"] = {{chars(lim::kMaxTagKey + 1), "v"}}; });
  add("tag value 257", false, [](json& j, Rng&) {
    j["tags"] = {{"k", chars(lim::kMaxTagValue + 1)}};
  });
  add("tag value invalid UTF-8", false, [](json& j, Rng&) { j["tags"] = {{"k", "\xc3\x28"}}; });
  add("argv invalid UTF-8", false, [](json& j, Rng&) { j["argv"] = {"echo", "\xff\xfe"}; });
  add("unknown key nested to the depth limit", true, [](json& j, Rng&) {
    j["x"] = nested(lim::kMaxDepth - 1);  // the body's map is the first level
  });
  add("unknown key nested one past the depth limit", false,
      [](json& j, Rng&) { j["x"] = nested(lim::kMaxDepth); });
  add("unknown key ignored", true, [](json& j, Rng&) { j["future_field"] = {{"a", 1}}; });
  add("stdout and files_out at their maxima", true, [](json& j, Rng&) {
    j["argv"] = {"output", std::to_string(lim::kMaxOutputCap)};
    j["output_cap"] = lim::kMaxOutputCap;
    j["files"] = files_of(1, lim::kMaxFilesTotal);
    j["files_out"] = {"f0pppppp"};
  });
  return m;
}

// The bodies of one run, each with the answer it must get.
struct Case {
  std::string job_id;  // as written in the body
  bool valid;
  std::string why;
  std::string body;  // msgpack
};

inline bool heavy(const json& j) { return json::to_msgpack(j).size() > (1u << 20); }

// A valid request the memory test double finishes quickly, with a unique job_id.
inline json base_request(const std::string& id, Rng& rng) {
  static const std::vector<std::vector<std::string>> argvs = {
      {"true"}, {"echo", "hi"}, {"false"}, {"exit", "3"}, {"sleep", "5"}, {"output", "100"}};
  return {{"job_id", id}, {"argv", argvs[rng() % argvs.size()]}};
}

inline std::vector<Case> generate(uint64_t seed, size_t random_cases) {
  Rng rng(seed);
  const auto muts = mutations();
  std::vector<Case> cases;
  size_t n = 0;
  auto next_id = [&] { return "ct-" + std::to_string(seed % 100000) + "-" + std::to_string(n++); };
  // Every mutation alone, then random combinations of one to three.
  for (const auto& m : muts) {
    json j = base_request(next_id(), rng);
    m.apply(j, rng);
    cases.push_back({j["job_id"], m.valid, m.name, {}});
    auto bytes = json::to_msgpack(j);
    cases.back().body.assign(bytes.begin(), bytes.end());
  }
  // job_id itself at and past its limits: a body past them cannot be attributed by job_id.
  std::string longest = "max-" + std::to_string(seed) + "-";
  longest += chars(lim::kMaxJobId - longest.size(), 'j');
  for (const auto& [id, valid] :
       std::vector<std::pair<std::string, bool>>{{longest, true},
                                                 {chars(lim::kMaxJobId + 1, 'j'), false},
                                                 {"bad id with spaces", false},
                                                 {"", false},
                                                 {"\xc3\x28", false}}) {
    json j = {{"job_id", id}, {"argv", {"true"}}};
    auto bytes = json::to_msgpack(j);
    cases.push_back({id, valid, "job_id of " + std::to_string(id.size()) + " bytes", {}});
    cases.back().body.assign(bytes.begin(), bytes.end());
  }
  {  // no job_id at all
    auto bytes = json::to_msgpack(json{{"argv", {"true"}}});
    cases.push_back({"", false, "job_id missing", std::string(bytes.begin(), bytes.end())});
  }
  for (size_t i = 0; i < random_cases; ++i) {
    json j = base_request(next_id(), rng);
    // A field's validity is that of the last mutation that wrote it (a later one may replace an
    // invalid value with a valid one, or the reverse).
    std::map<std::string, bool> field_valid;
    std::string why;
    const size_t k = 1 + rng() % 3;
    for (size_t t = 0; t < k; ++t) {
      const auto& m = muts[rng() % muts.size()];
      json trial = j;
      m.apply(trial, rng);
      // The big ones (MiBs each) stay rare: they are covered alone above.
      if (heavy(trial) && rng() % 8 != 0) continue;
      for (const auto& [key, value] : trial.items()) {
        if (!j.contains(key) || j[key] != value) field_valid[key] = m.valid;
      }
      j = std::move(trial);
      why += (why.empty() ? "" : " + ") + m.name;
    }
    bool valid = true;
    for (const auto& [key, ok] : field_valid) valid = valid && ok;
    auto bytes = json::to_msgpack(j);
    cases.push_back({j["job_id"], valid, why, std::string(bytes.begin(), bytes.end())});
  }
  return cases;
}

}  // namespace paddock::testing::contract
