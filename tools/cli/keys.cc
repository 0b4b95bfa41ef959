// paddock keys: CURVE key pairs and allowlists (README.md, "Operating Paddock").
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "commands.h"
#include "exit_codes.h"
#include "paddock/client/curve.h"

namespace paddock::cli {

CLI::App* add_keys_command(CLI::App& app, KeysOptions& o) {
  auto* cmd = app.add_subcommand(
      "keys",
      "CURVE keys: generate a key pair, show a key's public half, add a public key to an "
      "allowlist.");
  cmd->require_subcommand(1);
  auto* gen = cmd->add_subcommand(
      "generate",
      "Write DIR/NAME.key (the secret key, mode 0600) and DIR/NAME.pub (the public "
      "key and NAME, one line: an allowlist entry); print the public key.");
  gen->add_option("--out,-o", o.dir, "the directory to write to")->capture_default_str();
  gen->add_option("--name,-n", o.name, "the key's name (broker, worker-1, ci, ...)")->required();
  auto* show = cmd->add_subcommand(
      "show-public", "Print the public key of a NAME.key (derived) or NAME.pub file.");
  show->add_option("file", o.file, "the key file")->required();
  auto* allow = cmd->add_subcommand(
      "allow",
      "Append a public key (a NAME.pub file) to an allowlist file (created if absent), "
      "unless it is there already.");
  allow->add_option("allowlist", o.allowlist, "the allowlist file")->required();
  allow->add_option("file", o.file, "the NAME.pub (or NAME.key) file to allow")->required();
  allow->add_option("--name", o.name, "the name to list it under (default: the file's stem)");
  o.generate = gen;
  o.show_public = show;
  o.allow = allow;
  return cmd;
}

namespace {

int allow_key(const KeysOptions& o) {
  const std::string key = curve::read_public_key(o.file);
  std::string name = o.name;
  if (name.empty()) name = std::filesystem::path(o.file).stem().string();
  std::error_code ec;
  if (std::filesystem::exists(o.allowlist, ec)) {
    const auto list = curve::read_allowlist(o.allowlist);
    if (list.count(key) != 0) {
      std::printf("%s is already in %s (as '%s')\n", key.c_str(), o.allowlist.c_str(),
                  list.at(key).c_str());
      return exit_code::kOk;
    }
  }
  std::ofstream out(o.allowlist, std::ios::app);
  out << key << " " << name << "\n";
  if (!out) {
    std::fprintf(stderr, "error: cannot write %s\n", o.allowlist.c_str());
    return exit_code::kNoInput;
  }
  std::printf("allowed %s %s in %s\n", key.c_str(), name.c_str(), o.allowlist.c_str());
  return exit_code::kOk;
}

}  // namespace

int run_keys(const KeysOptions& o) {
  try {
    if (o.generate->parsed()) {
      const auto pair = curve::write_key_pair(o.dir, o.name);
      std::printf("%s\n", pair.public_key.c_str());
      std::fprintf(stderr, "wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n", o.dir.c_str(),
                   o.name.c_str(), o.dir.c_str(), o.name.c_str());
      return exit_code::kOk;
    }
    if (o.show_public->parsed()) {
      std::printf("%s\n", curve::read_public_key(o.file).c_str());
      return exit_code::kOk;
    }
    if (o.allow->parsed()) return allow_key(o);
  } catch (const curve::KeyError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kNoInput;
  }
  return exit_code::kUsage;
}

}  // namespace paddock::cli
