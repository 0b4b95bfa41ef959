// CURVE keys for Paddock's ZeroMQ sockets (README.md, "Operating Paddock"): generating, reading
// and checking key files and allowlists, and configuring a connecting socket.
//
// Formats (text; '#' starts a comment line; blank lines are ignored):
//   NAME.key  the secret key, one Z85 line (40 characters). Mode 0600: a secret key file that
//             its group or others may read or write is refused, as ssh refuses one.
//   NAME.pub  "<public Z85> NAME", one line. An allowlist is such a file (several lines: one key
//             each, the name optional) or a directory whose *.pub files are read.
// Files are at most kMaxKeyFileBytes; allowlists at most kMaxAllowlistKeys keys.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <zmq.hpp>

namespace paddock::curve {

inline constexpr size_t kKeyChars = 40;  // a 32-byte key in Z85
inline constexpr size_t kMaxKeyFileBytes = 64 << 10;
inline constexpr size_t kMaxAllowlistKeys = 100'000;

// A key file that cannot be used; the message names the file and what is wrong.
class KeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// True if `text` is a 40-character Z85 string.
bool valid_key(std::string_view text);
bool curve_available();  // libzmq was built with CURVE (zmq_has("curve"))

KeyPair generate();
// The public key of a secret key (both Z85). REQUIRES: valid_key(secret).
std::string public_of(const std::string& secret);

// Reads a secret key file; refuses one its group or others can access (KeyError).
KeyPair read_secret_key(const std::string& path);
// A public key given as the Z85 text itself or as a file (NAME.pub, or a NAME.key, whose public
// half is derived).
std::string read_public_key(const std::string& path_or_key);

// Public key (Z85) -> name ("" when the line has none).
using Allowlist = std::map<std::string, std::string>;
// A file of "KEY [NAME]" lines or a directory of *.pub files (name: the line's, else the file's
// stem). An empty allowlist is an error: it would refuse everyone.
Allowlist read_allowlist(const std::string& path);

// The parsers of the formats above, on a file's text already read: no I/O (fuzzed:
// tests/fuzz/fuzz_curve_files.cc). `source` names the file in errors; KeyError is all they throw.
// The Z85 secret key of a NAME.key file's text.
std::string parse_secret_key(std::string_view text, const std::string& source);
// The Z85 public key of a NAME.pub file's text (its one "KEY [NAME]" line).
std::string parse_public_key(std::string_view text, const std::string& source);
// Adds the keys of one allowlist file's text to `out` (a key already there keeps its name); a line
// without a name is named `default_name`. KeyError past kMaxAllowlistKeys keys in `out`.
void parse_allowlist(std::string_view text, const std::string& source,
                     const std::string& default_name, Allowlist& out);

// Writes DIR/NAME.key (0600, not overwriting) and DIR/NAME.pub; returns the pair.
KeyPair write_key_pair(const std::string& dir, const std::string& name);

// What a connecting socket needs for CURVE: the server's public key and its own pair.
struct ClientKeys {
  std::string server_public_key;
  KeyPair own;
};
// Reads the files (or Z85 text, for the server key). Both empty: nullopt (plaintext). One
// without the other: KeyError naming what is missing.
std::optional<ClientKeys> load_client_keys(const std::string& server_public_key,
                                           const std::string& own_secret_key_file);
// Sets curve_serverkey/publickey/secretkey. Call before connect().
void apply(zmq::socket_ref socket, const ClientKeys& keys);

}  // namespace paddock::curve
