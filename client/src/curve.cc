#include "paddock/client/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace paddock::curve {
namespace {

namespace fs = std::filesystem;

std::string os_error(const std::string& what, const std::string& path, int err) {
  return what + " " + path + ": " + std::strerror(err);
}

// Owns an fd (closed on every path).
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads a whole regular file of at most kMaxKeyFileBytes. `secret`: refuse group/other access.
std::string read_key_file(const std::string& path, bool secret) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw KeyError(os_error("open", path, errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw KeyError(os_error("stat", path, errno));
  if (!S_ISREG(st.st_mode)) throw KeyError(path + ": not a regular file");
  if (secret && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw KeyError("secret key file " + path + " has mode " + mode +
                   ": it may be read by others; refusing it (chmod 600 " + path + ")");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyFileBytes) {
    throw KeyError(path + ": larger than " + std::to_string(kMaxKeyFileBytes) +
                   " bytes: not a key file");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw KeyError(os_error("read", path, errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

// The lines that are not blank or comments, trimmed.
std::vector<std::string> content_lines(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) continue;
    const auto e = line.find_last_not_of(" \t\r");
    std::string trimmed(line.substr(b, e - b + 1));
    // '#' is a Z85 character too: a line is a comment only if it does not start with a key.
    if (trimmed[0] == '#' && !valid_key(trimmed.substr(0, trimmed.find_first_of(" \t")))) {
      continue;
    }
    out.push_back(std::move(trimmed));
  }
  return out;
}

// "KEY [NAME]" -> {KEY, NAME}.
std::pair<std::string, std::string> split_key_line(const std::string& line) {
  const auto sp = line.find_first_of(" \t");
  if (sp == std::string::npos) return {line, ""};
  const auto name = line.find_first_not_of(" \t", sp);
  return {line.substr(0, sp), name == std::string::npos ? "" : line.substr(name)};
}

void read_allowlist_file(const std::string& path, Allowlist& out) {
  parse_allowlist(read_key_file(path, false), path, fs::path(path).stem().string(), out);
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)};
  if (f.fd < 0) throw KeyError(os_error("create", path, errno));
  if (::fchmod(f.fd, mode) != 0) throw KeyError(os_error("chmod", path, errno));  // not umask's
  if (::write(f.fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    throw KeyError(os_error("write", path, errno));
  }
}

}  // namespace

bool valid_key(std::string_view text) {
  static constexpr std::string_view kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (text.size() != kKeyChars) return false;
  for (char c : text) {
    if (kZ85.find(c) == std::string_view::npos) return false;
  }
  return true;
}

bool curve_available() { return zmq_has("curve") != 0; }

KeyPair generate() {
  char pub[kKeyChars + 1];
  char sec[kKeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    throw KeyError(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()) +
                   " (is libzmq built with CURVE?)");
  }
  return KeyPair{pub, sec};
}

std::string public_of(const std::string& secret) {
  char pub[kKeyChars + 1];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    throw KeyError(std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return pub;
}

std::string parse_secret_key(std::string_view text, const std::string& source) {
  const auto lines = content_lines(text);
  if (lines.size() != 1 || !valid_key(lines[0])) {
    throw KeyError(source +
                   ": expected one 40-character Z85 secret key (a NAME.key file from "
                   "'paddock keys generate')");
  }
  return lines[0];
}

std::string parse_public_key(std::string_view text, const std::string& source) {
  const auto lines = content_lines(text);
  if (lines.size() != 1 || !valid_key(split_key_line(lines[0]).first)) {
    throw KeyError(source +
                   ": expected one 40-character Z85 public key (a NAME.pub file "
                   "from 'paddock keys generate')");
  }
  return split_key_line(lines[0]).first;
}

void parse_allowlist(std::string_view text, const std::string& source,
                     const std::string& default_name, Allowlist& out) {
  int n = 0;
  for (const auto& line : content_lines(text)) {
    ++n;
    auto [key, name] = split_key_line(line);
    if (!valid_key(key)) {
      throw KeyError(source + ": key " + std::to_string(n) +
                     " is not a 40-character Z85 public key");
    }
    if (name.empty()) name = default_name;
    out.emplace(std::move(key), std::move(name));
    if (out.size() > kMaxAllowlistKeys) {
      throw KeyError(source + ": more than " + std::to_string(kMaxAllowlistKeys) + " keys");
    }
  }
}

KeyPair read_secret_key(const std::string& path) {
  const std::string secret = parse_secret_key(read_key_file(path, true), path);
  return KeyPair{public_of(secret), secret};
}

std::string read_public_key(const std::string& path_or_key) {
  if (valid_key(path_or_key) && !fs::exists(path_or_key)) return path_or_key;
  if (path_or_key.ends_with(".key")) return read_secret_key(path_or_key).public_key;
  return parse_public_key(read_key_file(path_or_key, false), path_or_key);
}

Allowlist read_allowlist(const std::string& path) {
  Allowlist out;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".pub") files.push_back(entry.path());
    }
    if (ec) throw KeyError("read directory " + path + ": " + ec.message());
    for (const auto& f : files) read_allowlist_file(f.string(), out);
  } else {
    read_allowlist_file(path, out);
  }
  if (out.empty()) throw KeyError(path + ": no keys: this allowlist would refuse everyone");
  return out;
}

KeyPair write_key_pair(const std::string& dir, const std::string& name) {
  if (name.empty() || name.find_first_of("/ \t\n") != std::string::npos || name[0] == '.') {
    throw KeyError("key name '" + name + "': use letters, digits, '-', '_' or '.' (no '/')");
  }
  const KeyPair pair = generate();
  const std::string base = (fs::path(dir) / name).string();
  write_file(base + ".key",
             "# Paddock CURVE secret key '" + name + "' (Z85). Keep it private: mode 0600.\n" +
                 pair.secret_key + "\n",
             0600);
  write_file(base + ".pub", pair.public_key + " " + name + "\n", 0644);
  return pair;
}

std::optional<ClientKeys> load_client_keys(const std::string& server_public_key,
                                           const std::string& own_secret_key_file) {
  if (server_public_key.empty() && own_secret_key_file.empty()) return std::nullopt;
  if (server_public_key.empty()) {
    throw KeyError(
        "a CURVE key (--curve-key) needs the broker's public key too "
        "(--broker-public-key)");
  }
  if (own_secret_key_file.empty()) {
    throw KeyError(
        "the broker's public key (--broker-public-key) needs this side's own secret "
        "key too (--curve-key)");
  }
  if (!curve_available()) throw KeyError("this libzmq was built without CURVE");
  return ClientKeys{read_public_key(server_public_key), read_secret_key(own_secret_key_file)};
}

void apply(zmq::socket_ref socket, const ClientKeys& keys) {
  socket.set(zmq::sockopt::curve_serverkey, keys.server_public_key);
  socket.set(zmq::sockopt::curve_publickey, keys.own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.own.secret_key);
}

}  // namespace paddock::curve
