#include "claim_share.h"

#include <algorithm>
#include <queue>
#include <tuple>

namespace paddock::broker {

namespace {
// Tenants remembered at most; past it, those at or behind the current time (who would come back
// at it anyway) are forgotten.
constexpr size_t kRemembered = 4096;
}  // namespace

std::vector<size_t> ClaimShare::split(const std::vector<Tenant>& tenants, size_t n) {
  std::vector<size_t> out(tenants.size(), 0);
  std::vector<double> v(tenants.size());
  // (vtime, name, index): the least first.
  using Entry = std::tuple<double, std::string_view, size_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> next;
  for (size_t i = 0; i < tenants.size(); ++i) {
    auto it = vtime_.find(tenants[i].name);
    v[i] = std::max(it == vtime_.end() ? vnow_ : it->second, vnow_);
    if (tenants[i].allowance > 0) next.emplace(v[i], tenants[i].name, i);
  }
  for (size_t k = 0; k < n && !next.empty(); ++k) {
    const auto [at, name, i] = next.top();
    next.pop();
    vnow_ = at;
    ++out[i];
    v[i] = at + 1.0 / tenants[i].weight;
    if (out[i] < tenants[i].allowance) next.emplace(v[i], name, i);
  }
  for (size_t i = 0; i < tenants.size(); ++i) {
    if (out[i] > 0) vtime_[tenants[i].name] = v[i];
  }
  if (vtime_.size() > kRemembered) {
    std::erase_if(vtime_, [&](const auto& e) { return e.second <= vnow_; });
  }
  return out;
}

void ClaimShare::settle(const Tenant& tenant, size_t asked, size_t got) {
  if (got >= asked) return;
  auto it = vtime_.find(tenant.name);
  if (it == vtime_.end()) return;
  it->second -= static_cast<double>(asked - got) / tenant.weight;
}

double ClaimShare::vtime_of(std::string_view tenant) const {
  auto it = vtime_.find(tenant);
  return it == vtime_.end() ? vnow_ : std::max(it->second, vnow_);
}

}  // namespace paddock::broker
