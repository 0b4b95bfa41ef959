// An image directory's image.json as the QEMU backend reads it (src/qemu/guest_image.h): the
// warm-up its templates run, within limits, and a refusal that names the image for anything else.
#include "qemu/guest_image.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace qemu = paddock::runtime::qemu;
namespace fs = std::filesystem;
using paddock::runtime::Variant;

namespace {

struct ImageDir {
  fs::path path = fs::temp_directory_path() / ("paddock-image-" + std::to_string(::getpid()) + "-" +
                                               std::to_string(std::random_device{}()));
  ImageDir() {
    fs::create_directories(path);
    for (const char* f : {"vmlinuz", "initramfs.cpio"}) std::ofstream(path / f) << f;
  }
  ~ImageDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void image_json(const std::string& text) const { std::ofstream(path / "image.json") << text; }
};

std::string args(size_t n, size_t bytes) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) out += (i ? ",\"" : "\"") + std::string(bytes, 'a') + "\"";
  return out + "]";
}

}  // namespace

TEST_CASE("guest image: image.json's warmup is the template's warm-up, within its limits") {
  auto w = qemu::parse_image_warmup("py", R"({"name": "py", "warmup": ["python3", "-c", "pass"]})");
  REQUIRE(w.ok());
  CHECK(w.value() == std::vector<std::string>{"python3", "-c", "pass"});
  // None named: none; null or an empty list: none.
  for (const char* none : {R"({"name": "py"})", R"({"warmup": null})", R"({"warmup": []})"}) {
    auto n = qemu::parse_image_warmup("py", none);
    REQUIRE(n.ok());
    CHECK(n.value().empty());
  }
  // At the limits: accepted; past them: refused.
  CHECK(qemu::parse_image_warmup("py", "{\"warmup\": " + args(qemu::kMaxWarmupArgs, 1) + "}").ok());
  CHECK(qemu::parse_image_warmup("py", "{\"warmup\": " + args(1, qemu::kMaxWarmupArgBytes) + "}")
            .ok());
  for (const std::string& bad : {
           "{\"warmup\": " + args(qemu::kMaxWarmupArgs + 1, 1) + "}",
           "{\"warmup\": " + args(1, qemu::kMaxWarmupArgBytes + 1) + "}",
           std::string(R"({"warmup": "python3 -c pass"})"),
           std::string(R"({"warmup": ["python3", 1]})"),
           std::string(R"({"warmup": ["", "x"]})"),
           std::string(R"({"warmup": ["a\u0000b"]})"),
           std::string("[]"),
           std::string("not json"),
           std::string(20, '[') + std::string(20, ']'),
       }) {
    auto r = qemu::parse_image_warmup("py", bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().variant() == Variant::kUnsupported);
    CHECK(r.error().detail().find("guest image 'py'") != std::string::npos);
  }
}

TEST_CASE("guest image: load_guest_image takes the warm-up from the directory's image.json") {
  ImageDir dir;
  paddock::runtime::qemu::SnapshotEnv env;
  auto without = qemu::load_guest_image("t", dir.path.string(), "console=ttyS0", env);
  REQUIRE_MESSAGE(without.ok(), without.error().message());
  CHECK(without.value().warmup.empty());  // no image.json (build-guest-image.sh alone)

  dir.image_json(R"({"name": "t", "warmup": ["/bin/sh", "-c", "true"]})");
  auto with = qemu::load_guest_image("t", dir.path.string(), "console=ttyS0", env);
  REQUIRE(with.ok());
  CHECK(with.value().warmup == std::vector<std::string>{"/bin/sh", "-c", "true"});

  dir.image_json(R"({"name": "t", "warmup": "true"})");
  auto bad = qemu::load_guest_image("t", dir.path.string(), "console=ttyS0", env);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().detail().find("\"warmup\"") != std::string::npos);
}
