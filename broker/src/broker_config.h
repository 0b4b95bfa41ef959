// paddock-broker's configuration as a value: what its command line says, checked, with the journal
// path derived (broker/README.md lists the options). Parsing prints nothing and exits nothing: a
// bad value is a daemon::ConfigError saying which flag and why, so main stays short and tests can
// check each refusal.
#pragma once

#include <string>

#include "paddock/broker/broker.h"
#include "paddock/daemon/daemon.h"

namespace paddock::broker {

struct BrokerConfig {
  Options options;  // journal_path set unless --no-journal or --store
  // The directory the journal goes in when it is the default one (<state_dir>/journal.db); empty
  // when --journal, --no-journal or --store was given. make_state_dir creates it.
  std::string state_dir;
  // Files read by load_secrets (CURVE keys and allowlists, the dashboard's token); empty: none.
  std::string curve_key_file, client_allow, worker_allow, dashboard_token_file;
  std::string ready_file;  // empty: none
  std::string log_level = "info";
};

// The config, or why the command line is not one (exit code 2; 0 with the help text for --help).
// Reads no file; finds the default state directory from the environment.
daemon::Parsed<BrokerConfig> parse_broker_args(int argc, const char* const* argv);

// Creates config.state_dir if it is set and missing (0700: only a directory made here is
// narrowed; an operator's own keeps its mode). A Failure: "--state-dir DIR: why".
base::Status make_state_dir(const BrokerConfig& config);

// Reads the CURVE key and allowlists and the dashboard token the config names into its options;
// a Failure naming the file and what is wrong with it.
base::Status load_secrets(BrokerConfig& config);

}  // namespace paddock::broker
