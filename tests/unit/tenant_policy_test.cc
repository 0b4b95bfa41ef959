// The operator's limits per tenant (broker/src/tenant_policy.h): the TOML file's tables and keys,
// the defaults a tenant's table starts from, every refusal naming its key, and the per-job caps'
// messages.
#include <doctest/doctest.h>

#include "tenant_policy.h"

using paddock::broker::check_caps;
using paddock::broker::TenantPolicy;

namespace {

paddock::schemas::JobRequest request() {
  paddock::schemas::JobRequest r;
  r.job_id = "j";
  r.argv = {"true"};
  r.timeout_ms = 500;  // within every cap below
  r.output_cap = 5;
  return r;
}

std::string error_of(const std::string& text) {
  auto p = TenantPolicy::parse(text, "t.toml");
  REQUIRE_FALSE(p);
  return p.error().message;
}

}  // namespace

TEST_CASE("tenant policy: a tenant's table starts from the defaults, an unnamed tenant has them") {
  auto p = TenantPolicy::parse(
      "[defaults]\nmax_queued = 50\nsubmit_rate = 10\nsubmit_burst = 20\nmax_vcpus = 4\n"
      "images = [\"default\"]\n\n"
      "[tenants.alice]\nmax_queued = 5\nsubmit_rate = 2.5\nweight = 3\nmax_running = 7\n\n"
      "[tenants.\"ci.runner-1\"]\nweight = 0.5\n",
      "t.toml");
  REQUIRE_MESSAGE(p, p.error().message);
  CHECK(p->named() == 2);
  const auto& alice = p->of("alice");
  CHECK(alice.max_queued == 5);
  CHECK(alice.submit_rate == doctest::Approx(2.5));
  CHECK(alice.submit_burst == 20);  // from the defaults
  CHECK(alice.max_vcpus == 4);
  CHECK(alice.images == std::vector<std::string>{"default"});
  CHECK(alice.weight == doctest::Approx(3.0));
  CHECK(alice.max_running == 7);
  CHECK(p->of("ci.runner-1").weight == doctest::Approx(0.5));
  CHECK(p->of("nobody").weight == doctest::Approx(1.0));
  CHECK(p->of("ci.runner-1").max_queued == 50);
  CHECK(p->of("nobody").max_queued == 50);
  // Without a file: limits no wider than the protocol's own, no rate limit.
  auto empty = TenantPolicy::parse("", "t.toml");
  REQUIRE(empty);
  CHECK(empty->of("x").submit_rate == 0);
  CHECK(empty->of("x").max_vcpus == 16);
  CHECK(empty->of("x").images.empty());
}

TEST_CASE("tenant policy: a file that is not right is refused naming the file, key and why") {
  CHECK(error_of("[defaults]\nmax_queud = 1\n") ==
        "tenants file t.toml: defaults.max_queud: unknown key");
  CHECK(error_of("[limits]\n") ==
        "tenants file t.toml: limits: unknown table (there are [defaults] and [tenants.NAME])");
  CHECK(error_of("[tenants.\"has space\"]\n").find("not a tenant name") != std::string::npos);
  CHECK(error_of("[tenants.a]\nmax_vcpus = 17\n") ==
        "tenants file t.toml: tenants.a.max_vcpus: must be a whole number from 1 to 16");
  CHECK(error_of("[tenants.a]\nmax_queued = -1\n").find("tenants.a.max_queued") !=
        std::string::npos);
  CHECK(error_of("[tenants.a]\nsubmit_rate = \"fast\"\n").find("tenants.a.submit_rate") !=
        std::string::npos);
  CHECK(error_of("[tenants.a]\nimages = [\"Bad!\"]\n").find("tenants.a.images") !=
        std::string::npos);
  CHECK(error_of("[tenants.a]\nweight = 0\n") ==
        "tenants file t.toml: tenants.a.weight: must be a number from 0.001 to 1000");
  CHECK(error_of("[tenants.a]\nmax_running = -3\n").find("tenants.a.max_running") !=
        std::string::npos);
  CHECK(error_of("[defaults\n").find("tenants file t.toml: line 1:") == 0);
  auto missing = TenantPolicy::load("/nonexistent/tenants.toml");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message == "tenants file /nonexistent/tenants.toml: cannot be read");
}

TEST_CASE("tenant policy: per-job caps name the field, the value, the tenant and the limit") {
  auto p = TenantPolicy::parse(
      "[tenants.bob]\nmax_vcpus = 2\nmax_mem_mib = 256\nmax_timeout_ms = 1000\n"
      "max_output_cap = 10\nimages = [\"default\", \"python\"]\n",
      "t.toml");
  REQUIRE(p);
  const auto& bob = p->of("bob");
  CHECK_FALSE(check_caps(bob, "bob", request()));
  auto r = request();
  r.vcpus = 3;
  CHECK(check_caps(bob, "bob", r)->message == "vcpus: 3 is over tenant 'bob''s max_vcpus (2)");
  r = request();
  r.mem_mib = 512;
  CHECK(check_caps(bob, "bob", r)->field == "mem_mib");
  r = request();
  r.timeout_ms = 1001;
  CHECK(check_caps(bob, "bob", r)->field == "timeout_ms");
  r = request();
  r.output_cap = 11;
  CHECK(check_caps(bob, "bob", r)->field == "output_cap");
  r = request();
  r.image = "node";
  CHECK(check_caps(bob, "bob", r)->message ==
        "image: 'node' is not among tenant 'bob''s images (default, python)");
  r.image = "python";
  CHECK_FALSE(check_caps(bob, "bob", r));
}
