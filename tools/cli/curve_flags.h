// The CURVE flags every command that talks to a broker takes (README.md, "Operating Paddock").
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace paddock::cli {

struct CurveFlags {
  std::string broker_public_key;  // a NAME.pub file or the Z85 text; "" for plaintext
  std::string curve_key;          // this submitter's NAME.key (mode 0600); "" for plaintext
};

// --broker-public-key (PADDOCK_BROKER_KEY) and --curve-key (PADDOCK_CURVE_KEY).
void add_curve_options(CLI::App& cmd, CurveFlags& flags);

}  // namespace paddock::cli
