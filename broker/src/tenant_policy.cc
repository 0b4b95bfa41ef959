#include "tenant_policy.h"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "paddock/schemas/codec.h"

namespace paddock::broker {

namespace sc = paddock::schemas;
namespace L = paddock::schemas::limits;

namespace {

struct Bad {
  std::string what;
};

// An integer key within [min, max].
uint64_t integer(const toml::node& v, const std::string& key, uint64_t min, uint64_t max) {
  const auto n = v.value<int64_t>();
  if (!v.is_integer() || !n || *n < 0 || static_cast<uint64_t>(*n) < min ||
      static_cast<uint64_t>(*n) > max) {
    throw Bad{key + ": must be a whole number from " + std::to_string(min) + " to " +
              std::to_string(max)};
  }
  return static_cast<uint64_t>(*n);
}

// A table's keys over `base` (the defaults, for a tenant's table).
TenantLimits limits_of(const toml::table& t, const std::string& where, TenantLimits base) {
  for (auto&& [k, v] : t) {
    const std::string key = where + "." + std::string(k.str());
    if (k == "max_queued") {
      base.max_queued = integer(v, key, 0, 1'000'000'000);
    } else if (k == "max_running") {
      base.max_running = integer(v, key, 0, 1'000'000'000);
    } else if (k == "weight") {
      const auto w = v.value<double>();
      if (!w || !(v.is_floating_point() || v.is_integer()) || !(*w >= 0.001) || *w > 1000) {
        throw Bad{key + ": must be a number from 0.001 to 1000"};
      }
      base.weight = *w;
    } else if (k == "submit_rate") {
      const auto r = v.value<double>();  // an integer reads as a double too
      if (!r || !(v.is_floating_point() || v.is_integer()) || *r < 0 || *r > 1e9) {
        throw Bad{key + ": must be a number of jobs per second from 0 (no limit) to 1e9"};
      }
      base.submit_rate = *r;
    } else if (k == "submit_burst") {
      base.submit_burst = integer(v, key, 1, 1'000'000'000);
    } else if (k == "max_vcpus") {
      base.max_vcpus = static_cast<uint32_t>(integer(v, key, 1, L::kMaxVcpus));
    } else if (k == "max_mem_mib") {
      base.max_mem_mib = static_cast<uint32_t>(integer(v, key, L::kMinMemMib, L::kMaxMemMib));
    } else if (k == "max_timeout_ms") {
      base.max_timeout_ms = static_cast<uint32_t>(integer(v, key, 1, L::kMaxTimeoutMs));
    } else if (k == "max_output_cap") {
      base.max_output_cap = static_cast<uint32_t>(integer(v, key, 0, L::kMaxOutputCap));
    } else if (k == "images") {
      const auto* a = v.as_array();
      if (a == nullptr) throw Bad{key + ": must be an array of image names"};
      base.images.clear();
      for (auto&& i : *a) {
        const auto name = i.value<std::string>();
        if (!name || !sc::valid_image_name(*name)) {
          throw Bad{key + ": every entry must be an image name (1-64 of [a-z0-9._-])"};
        }
        base.images.push_back(*name);
      }
    } else {
      throw Bad{key + ": unknown key"};
    }
  }
  return base;
}

}  // namespace

base::Expected<TenantPolicy> TenantPolicy::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return base::fail("tenants file " + path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

base::Expected<TenantPolicy> TenantPolicy::parse(std::string_view text, const std::string& source) {
  const std::string where = "tenants file " + source + ": ";
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return base::fail(where + "line " + std::to_string(e.source().begin.line) + ": " +
                      std::string(e.description()));
  }
  TenantPolicy p;
  try {
    for (auto&& [k, v] : doc) {
      if (k != "defaults" && k != "tenants") {
        throw Bad{std::string(k.str()) +
                  ": unknown table (there are [defaults] and [tenants.NAME])"};
      }
      if (!v.is_table()) throw Bad{std::string(k.str()) + ": must be a table"};
    }
    if (const auto* d = doc["defaults"].as_table()) p.defaults_ = limits_of(*d, "defaults", {});
    if (const auto* ts = doc["tenants"].as_table()) {
      for (auto&& [name, v] : *ts) {
        const std::string tenant(name.str());
        if (!sc::valid_tenant(tenant)) {
          throw Bad{"tenants." + tenant +
                    ": not a tenant name (1-64 of [A-Za-z0-9._-], not starting with '.')"};
        }
        const auto* t = v.as_table();
        if (t == nullptr) throw Bad{"tenants." + tenant + ": must be a table"};
        p.tenants_.emplace(tenant, limits_of(*t, "tenants." + tenant, p.defaults_));
      }
    }
  } catch (const Bad& bad) {
    return base::fail(where + bad.what);
  }
  return p;
}

const TenantLimits& TenantPolicy::of(std::string_view tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? defaults_ : it->second;
}

std::optional<CapRefusal> check_caps(const TenantLimits& limits, std::string_view tenant,
                                     const sc::JobRequest& r) {
  const std::string of = " is over tenant '" + std::string(tenant) + "''s ";
  auto over = [&](const char* field, uint64_t value, const char* limit, uint64_t max) {
    return CapRefusal{field, std::string(field) + ": " + std::to_string(value) + of + limit + " (" +
                                 std::to_string(max) + ")"};
  };
  if (r.vcpus > limits.max_vcpus) return over("vcpus", r.vcpus, "max_vcpus", limits.max_vcpus);
  if (r.mem_mib > limits.max_mem_mib) {
    return over("mem_mib", r.mem_mib, "max_mem_mib", limits.max_mem_mib);
  }
  if (r.timeout_ms > limits.max_timeout_ms) {
    return over("timeout_ms", r.timeout_ms, "max_timeout_ms", limits.max_timeout_ms);
  }
  if (r.output_cap > limits.max_output_cap) {
    return over("output_cap", r.output_cap, "max_output_cap", limits.max_output_cap);
  }
  if (!limits.images.empty() &&
      std::find(limits.images.begin(), limits.images.end(), r.image) == limits.images.end()) {
    std::string allowed;
    for (const auto& i : limits.images) allowed += (allowed.empty() ? "" : ", ") + i;
    return CapRefusal{"image", "image: '" + r.image + "' is not among tenant '" +
                                   std::string(tenant) + "''s images (" + allowed + ")"};
  }
  return std::nullopt;
}

std::string max_queued_refusal(std::string_view tenant, uint64_t max_queued) {
  return "tenant '" + std::string(tenant) + "' has " + std::to_string(max_queued) +
         " jobs queued, its max_queued; retry when some have run";
}

}  // namespace paddock::broker
