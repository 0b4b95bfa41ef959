// paddock::curve key files and allowlists, and the broker's ZAP decision and plaintext rule.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "curve_auth.h"
#include "paddock/client/curve.h"

using namespace paddock;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
  TmpDir() {
    std::string t = (fs::temp_directory_path() / "paddock-curve-unit-XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TmpDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(path + "/" + name) << text;
  }
  std::string path;
};

}  // namespace

TEST_CASE("curve keys: generate writes a 0600 secret key whose public key the .pub file holds") {
  TmpDir d;
  const auto pair = curve::write_key_pair(d.path, "alice");
  CHECK(curve::valid_key(pair.public_key));
  CHECK(curve::valid_key(pair.secret_key));
  struct stat st {};
  REQUIRE(::stat((d.path + "/alice.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(curve::read_secret_key(d.path + "/alice.key").public_key == pair.public_key);
  CHECK(curve::read_public_key(d.path + "/alice.pub") == pair.public_key);
  CHECK(curve::read_public_key(d.path + "/alice.key") == pair.public_key);
  CHECK(curve::read_public_key(pair.public_key) == pair.public_key);
  CHECK_THROWS_AS(curve::write_key_pair(d.path, "alice"), curve::KeyError);  // never overwrites
  CHECK_THROWS_AS(curve::write_key_pair(d.path, "../x"), curve::KeyError);
}

TEST_CASE("curve keys: a secret key readable by group or others is refused naming the mode") {
  TmpDir d;
  curve::write_key_pair(d.path, "k");
  REQUIRE(::chmod((d.path + "/k.key").c_str(), 0644) == 0);
  try {
    curve::read_secret_key(d.path + "/k.key");
    FAIL("not refused");
  } catch (const curve::KeyError& e) {
    CHECK(std::string(e.what()).find("mode 0644") != std::string::npos);
    CHECK(std::string(e.what()).find("chmod 600") != std::string::npos);
  }
}

TEST_CASE("curve keys: malformed key files and empty allowlists are refused") {
  TmpDir d;
  d.write("short.pub", "abc\n");
  CHECK_THROWS_AS(curve::read_public_key(d.path + "/short.pub"), curve::KeyError);
  d.write("two.pub", std::string(40, 'a') + "\n" + std::string(40, 'b') + "\n");
  CHECK_THROWS_AS(curve::read_public_key(d.path + "/two.pub"), curve::KeyError);
  d.write("big.pub", std::string(curve::kMaxKeyFileBytes + 1, 'a'));
  CHECK_THROWS_AS(curve::read_public_key(d.path + "/big.pub"), curve::KeyError);
  d.write("empty.allow", "# nobody\n\n");
  CHECK_THROWS_AS(curve::read_allowlist(d.path + "/empty.allow"), curve::KeyError);
  d.write("bad.allow", std::string(40, 'a') + " ok\nnot-a-key\n");
  CHECK_THROWS_AS(curve::read_allowlist(d.path + "/bad.allow"), curve::KeyError);
  CHECK_THROWS_AS(curve::read_public_key(d.path + "/missing.pub"), curve::KeyError);
}

TEST_CASE("curve keys: an allowlist is a file of KEY NAME lines or a directory of .pub files") {
  TmpDir d;
  const std::string hash_key = "#" + std::string(39, 'x');  // '#' is a Z85 character
  d.write("list", "# comment\n" + std::string(40, 'a') + " alice\n" + hash_key + "\n");
  auto list = curve::read_allowlist(d.path + "/list");
  REQUIRE(list.size() == 2);
  CHECK(list.at(std::string(40, 'a')) == "alice");
  CHECK(list.at(hash_key) == "list");
  fs::create_directory(d.path + "/dir");
  const auto w1 = curve::write_key_pair(d.path + "/dir", "w1");
  const auto w2 = curve::write_key_pair(d.path + "/dir", "w2");
  auto dir = curve::read_allowlist(d.path + "/dir");  // the .key files are not read
  REQUIRE(dir.size() == 2);
  CHECK(dir.at(w1.public_key) == "w1");
  CHECK(dir.at(w2.public_key) == "w2");
}

TEST_CASE("curve keys: client keys need both the broker key and the own key") {
  TmpDir d;
  curve::write_key_pair(d.path, "b");
  curve::write_key_pair(d.path, "c");
  CHECK_FALSE(curve::load_client_keys("", "").has_value());
  CHECK_THROWS_AS(curve::load_client_keys(d.path + "/b.pub", ""), curve::KeyError);
  CHECK_THROWS_AS(curve::load_client_keys("", d.path + "/c.key"), curve::KeyError);
  auto keys = curve::load_client_keys(d.path + "/b.pub", d.path + "/c.key");
  REQUIRE(keys.has_value());
  CHECK(keys->server_public_key == curve::read_public_key(d.path + "/b.pub"));
}

TEST_CASE("broker ZAP: each domain checks its own allowlist") {
  const curve::Allowlist clients = {{std::string(40, 'c'), "alice"}};
  const curve::Allowlist workers = {{std::string(40, 'w'), "w1"}};
  auto v = broker::zap_verdict("clients", "CURVE", std::string(40, 'c'), clients, workers);
  CHECK(v.allowed);
  CHECK(v.user_id == "alice");
  CHECK_FALSE(
      broker::zap_verdict("clients", "CURVE", std::string(40, 'w'), clients, workers).allowed);
  CHECK_FALSE(
      broker::zap_verdict("workers", "CURVE", std::string(40, 'c'), clients, workers).allowed);
  CHECK(broker::zap_verdict("workers", "CURVE", std::string(40, 'w'), clients, workers).allowed);
  CHECK_FALSE(
      broker::zap_verdict("other", "CURVE", std::string(40, 'w'), clients, workers).allowed);
  CHECK_FALSE(
      broker::zap_verdict("clients", "NULL", std::string(40, 'c'), clients, workers).allowed);
}

TEST_CASE("broker plaintext rule: loopback and ipc endpoints are local, others are not") {
  CHECK(broker::is_local_endpoint("tcp://127.0.0.1:5555"));
  CHECK(broker::is_local_endpoint("tcp://127.0.0.1:*"));
  CHECK(broker::is_local_endpoint("tcp://localhost:5555"));
  CHECK(broker::is_local_endpoint("tcp://[::1]:5555"));
  CHECK(broker::is_local_endpoint("ipc:///run/paddock.sock"));
  CHECK_FALSE(broker::is_local_endpoint("tcp://0.0.0.0:5555"));
  CHECK_FALSE(broker::is_local_endpoint("tcp://*:5555"));
  CHECK_FALSE(broker::is_local_endpoint("tcp://10.0.0.5:5555"));
  CHECK_FALSE(broker::is_local_endpoint("tcp://127.example.com:5555"));
}
