// Where a broker keeps its state (the journal) when no --state-dir or --journal is given.
//
// In order: $STATE_DIRECTORY (what systemd's StateDirectory= sets for a service; its first entry
// if it lists several), /var/lib/paddock/broker for root, else
// ${XDG_STATE_HOME:-$HOME/.local/state}/paddock/broker. Empty if none applies (no HOME).
#pragma once

#include <sys/types.h>
#include <string>

namespace paddock::broker {

// Pure: the environment values are passed in (nullptr when unset) so tests need no real env.
std::string default_state_dir(uid_t euid, const char* state_directory, const char* xdg_state_home,
                              const char* home);

// The same, from this process's euid and environment.
std::string default_state_dir();

}  // namespace paddock::broker
