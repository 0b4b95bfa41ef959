#include "state_dir.h"

#include <unistd.h>

#include <cstdlib>

namespace paddock::broker {

namespace {
bool set(const char* v) { return v != nullptr && *v != '\0'; }
}  // namespace

std::string default_state_dir(uid_t euid, const char* state_directory, const char* xdg_state_home,
                              const char* home) {
  if (set(state_directory)) {
    std::string first(state_directory);
    return first.substr(0, first.find(':'));  // systemd joins several with ':'
  }
  if (euid == 0) return "/var/lib/paddock/broker";
  if (set(xdg_state_home) && xdg_state_home[0] == '/') {
    return std::string(xdg_state_home) + "/paddock/broker";
  }
  if (set(home)) return std::string(home) + "/.local/state/paddock/broker";
  return "";
}

std::string default_state_dir() {
  return default_state_dir(::geteuid(), std::getenv("STATE_DIRECTORY"),
                           std::getenv("XDG_STATE_HOME"), std::getenv("HOME"));
}

}  // namespace paddock::broker
