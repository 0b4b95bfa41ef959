// paddock-load: drives a broker with many copies of one job and reports throughput and latency
// percentiles (README.md, "Load tool").
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>

#include "broker_session.h"
#include "exit_codes.h"
#include "load/driver.h"
#include "load/options.h"
#include "paddock/client/client.h"

namespace {

namespace cli = paddock::cli;
namespace load = paddock::load;
constexpr int kCannotCreate = 73;  // EX_CANTCREAT: --json-out cannot be written

constexpr const char* kDescription =
    "paddock-load: drives a Paddock broker with many copies of one job, closed loop "
    "(--concurrency:\n"
    "that many outstanding) or open loop (--rate: jobs per second on a fixed schedule), and "
    "reports\n"
    "throughput and latency percentiles (submit->accepted, submit->result) as text, or one JSON\n"
    "object with --json. In open loop, latencies count from each job's scheduled send time.\n"
    "Exit statuses: 0 every job answered (ERRORs included), 69 the broker stopped answering,\n"
    "130 interrupted (Ctrl-C once stops sending and waits; twice stops at once), 64 bad usage.";

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "paddock-load"};
  load::LoadOptions opts;
  load::add_load_options(app, opts);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : cli::exit_code::kUsage;
  }

  paddock::schemas::JobRequest tmpl;
  std::optional<cli::BrokerSession> session;
  try {
    load::resolve(opts);
    tmpl = load::make_template(opts);
    // At least 3 s: the session PINGs after 1 s of quiet, and must hear the PONG in time.
    const auto silence = std::max<int64_t>(3000, static_cast<int64_t>(opts.timeout_s * 1000));
    session.emplace(opts.broker, std::chrono::milliseconds(silence), opts.curve);
  } catch (const load::UsageError& e) {
    std::fprintf(stderr, "paddock-load: %s\n", e.message.c_str());
    return e.status;
  } catch (const paddock::client::ClientError& e) {  // a malformed endpoint
    std::fprintf(stderr, "paddock-load: %s\n", e.what());
    return cli::exit_code::kUsage;
  }

  load::Outcome out;
  try {
    out = load::run_load(opts, tmpl, *session);
  } catch (const paddock::client::ClientError& e) {  // a send failed
    std::fprintf(stderr, "paddock-load: %s\n", e.what());
    return cli::exit_code::kUnavailable;
  }

  const std::string json = load::summary_json(out.run, out.tally).dump();
  if (opts.json) {
    std::printf("%s\n", json.c_str());
  } else {
    std::fputs(load::summary_text(out.run, out.tally).c_str(), stdout);
  }
  std::fflush(stdout);
  if (!out.give_up.empty()) std::fprintf(stderr, "paddock-load: %s\n", out.give_up.c_str());
  if (!opts.json_out.empty() && !write_file(opts.json_out, json + "\n")) {
    std::fprintf(stderr, "paddock-load: cannot write --json-out '%s'\n", opts.json_out.c_str());
    return out.status != 0 ? out.status : kCannotCreate;
  }
  return out.status;
}
