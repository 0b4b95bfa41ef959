// paddock: the command-line submitter for a Paddock broker (schemas/PROTOCOL.md).
#include <cstdio>

#include "commands.h"
#include "exit_codes.h"

namespace paddock::cli {

void add_broker_option(CLI::App& cmd, std::string& broker) {
  cmd.add_option("--broker,-b", broker,
                 "the broker's client endpoint, as printed in its ready file; brokers that share "
                 "one queue (--store) as a comma-separated list, tried in turn")
      ->envname("PADDOCK_BROKER")
      ->capture_default_str();
}

}  // namespace paddock::cli

int main(int argc, char** argv) {
  namespace cli = paddock::cli;
  CLI::App app{
      "paddock: run jobs on a Paddock broker and its workers.\n"
      "Exit statuses: submit exits with the job's own status (124 timed out, 128+n killed by\n"
      "signal n, 125 Paddock error, 75 queue full, 69 broker unreachable); 64 bad usage.",
      "paddock"};
  app.require_subcommand(1);
  app.fallthrough(false);

  cli::SubmitOptions submit;
  cli::BatchOptions batch;
  cli::CancelOptions cancel;
  cli::PingOptions ping;
  auto* submit_cmd = cli::add_submit_command(app, submit);
  auto* batch_cmd = cli::add_batch_command(app, batch);
  auto* cancel_cmd = cli::add_cancel_command(app, cancel);
  auto* ping_cmd = cli::add_ping_command(app, ping);
  cli::DeadLettersOptions dead;
  auto* dead_cmd = cli::add_dead_letters_command(app, dead);
  cli::KeysOptions keys;
  auto* keys_cmd = cli::add_keys_command(app, keys);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : cli::exit_code::kUsage;
  }
  if (submit_cmd->parsed()) return cli::run_submit(submit);
  if (batch_cmd->parsed()) return cli::run_batch(batch);
  if (cancel_cmd->parsed()) return cli::run_cancel(cancel);
  if (ping_cmd->parsed()) return cli::run_ping(ping);
  if (dead_cmd->parsed()) return cli::run_dead_letters(dead);
  if (keys_cmd->parsed()) return cli::run_keys(keys);
  std::fputs(app.help().c_str(), stderr);
  return cli::exit_code::kUsage;
}
