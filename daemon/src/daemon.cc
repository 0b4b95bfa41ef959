#include "paddock/daemon/daemon.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace paddock::daemon {
namespace {

std::atomic<bool> g_stop_requested{false};
std::atomic<StopTarget*> g_target{nullptr};

extern "C" void on_stop_signal(int) {
  g_stop_requested.store(true);
  if (auto* t = g_target.load()) t->stop(t->context);
}

}  // namespace

int report(const ConfigError& error) {
  std::FILE* out = error.exit_code == 0 ? stdout : stderr;
  std::fputs(error.message.c_str(), out);
  if (!error.message.empty() && error.message.back() != '\n') std::fputc('\n', out);
  return error.exit_code;
}

void install_stop_signals() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_requested() { return g_stop_requested.load(); }

StopTarget::StopTarget(Callback stop_fn, void* ctx) : stop(stop_fn), context(ctx) {
  g_target.store(this);
  // A signal before this point only set the flag: pass it on now.
  if (g_stop_requested.load()) stop(context);
}

StopTarget::~StopTarget() { g_target.store(nullptr); }

void set_up_logger(const std::string& level, const std::string& who) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("paddock"));
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ " + who + ": %v");
}

base::Status write_ready_file(const std::string& path, nlohmann::json fields) {
  fields["pid"] = static_cast<int>(getpid());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << fields.dump() << "\n";
    if (!out) return base::fail("ready file: write " + tmp + " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return base::fail("ready file: rename " + tmp + " to " + path + ": " + ec.message());
  return {};
}

}  // namespace paddock::daemon
