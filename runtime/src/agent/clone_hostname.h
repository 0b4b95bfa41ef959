// The hostname a clone restored from a shared snapshot gets on its first resume (AgentClient::
// refresh), the same on every backend.
#pragma once

#include <string>

namespace paddock::runtime::agent {

// "paddock-" and the VM id, reduced to [A-Za-z0-9-], at most 63 bytes, no trailing '-'.
inline std::string clone_hostname(const std::string& vm_id) {
  std::string h = "paddock-";
  for (char c : vm_id) {
    if (h.size() >= 63) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    h += ok ? c : '-';
  }
  while (h.back() == '-') h.pop_back();
  return h;
}

}  // namespace paddock::runtime::agent
