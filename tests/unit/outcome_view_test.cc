// view_job_result / view_job_error against decode_job_result / decode_job_error: the views must
// accept exactly what the decoders accept and read the same job_id (code, variant, retryable), on
// the shared vectors, on hand-made hostile bodies at each msgpack limit, and on many deterministic
// mutations of valid bodies. The broker forwards what a view accepts, so a view that accepted more
// would let a body through that the decoder's limits refuse.
#include <doctest/doctest.h>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "codec_builders.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"
#include "paddock/schemas/outcome_view.h"

namespace {

namespace sc = paddock::schemas;
namespace L = paddock::schemas::limits;
using Packer = msgpack::packer<msgpack::sbuffer>;

using paddock::test::full_error;
using paddock::test::full_result;
using paddock::test::pack;
using paddock::test::read_file;

void str(Packer& pk, std::string_view s) { paddock::test::pack_str(pk, s); }

// A result or error body with one more top-level key, whose value `value` packs.
std::string result_with(std::string_view key, const std::function<void(Packer&)>& value) {
  return pack([&](Packer& pk) {
    pk.pack_map(2);
    str(pk, "job_id");
    str(pk, "j");
    str(pk, key);
    value(pk);
  });
}

// Checks that the view and the decoder agree on `body`; returns whether it was accepted.
bool agree_result(std::string_view body) {
  const auto view = sc::view_job_result(body);
  const auto full = sc::decode_job_result(body);
  CHECK_MESSAGE(static_cast<bool>(view) == static_cast<bool>(full),
                "view: " << (view ? "accepted" : view.error().message())
                         << "; decoder: " << (full ? "accepted" : full.error().message()));
  if (view && full) {
    CHECK(view->job_id == full->job_id);
    CHECK(view->attempt == full->attempt);
  }
  if (!view) CHECK_FALSE(view.error().field.empty());
  return static_cast<bool>(full);
}

bool agree_error(std::string_view body) {
  const auto view = sc::view_job_error(body);
  const auto full = sc::decode_job_error(body);
  CHECK_MESSAGE(static_cast<bool>(view) == static_cast<bool>(full),
                "view: " << (view ? "accepted" : view.error().message())
                         << "; decoder: " << (full ? "accepted" : full.error().message()));
  if (view && full) {
    CHECK(view->job_id == full->job_id);
    CHECK(view->code == full->code);
    CHECK(view->variant == full->variant);
    CHECK(view->retryable == full->retryable);
    CHECK(view->attempt == full->attempt);
  }
  if (!view) CHECK_FALSE(view.error().field.empty());
  return static_cast<bool>(full);
}

}  // namespace

TEST_CASE("outcome views: a full RESULT and ERROR read the fields the broker uses") {
  const std::string result = sc::encode(full_result());
  auto r = sc::view_job_result(result);
  REQUIRE(r);
  CHECK(r->job_id == "res-1");
  CHECK(r->code == 0);
  CHECK_FALSE(r->retryable);
  const std::string error = sc::encode(full_error());
  auto e = sc::view_job_error(error);
  REQUIRE(e);
  CHECK(e->job_id == "err-1");
  CHECK(e->code == 5);
  CHECK(e->variant == "SnapshotNotFound");
  CHECK(e->retryable);
  CHECK(r->attempt == full_result().attempt);
  CHECK(e->attempt == full_error().attempt);
  // Without an attempt: a RESULT's is 1, an ERROR's 0 (none), as the decoders read them.
  CHECK(sc::view_job_result(pack([](Packer& pk) {
          pk.pack_map(1);
          str(pk, "job_id");
          str(pk, "r");
        }))->attempt == 1);
  CHECK(sc::view_job_error(pack([](Packer& pk) {
          pk.pack_map(2);
          str(pk, "code");
          pk.pack(9);
          str(pk, "variant");
          str(pk, "Shutdown");
        }))->attempt == 0);
  // Views point into the body, not into a copy.
  CHECK(e->job_id.data() >= error.data());
  CHECK(e->job_id.data() < error.data() + error.size());
}

TEST_CASE("outcome views: the shared vectors are accepted and refused as the decoders do") {
  const std::string dir = std::string(PADDOCK_SOURCE_DIR) + "/schemas/vectors";
  const auto manifest = nlohmann::json::parse(read_file(dir + "/manifest.json"));
  size_t results = 0;
  size_t errors = 0;
  for (const auto& entry : manifest) {
    const std::string type = entry.at("type");
    const std::string file = entry.at("file");
    CAPTURE(file);
    const std::string body = read_file(dir + "/" + file);
    if (type == "JobResult") {
      CHECK(agree_result(body) == entry.at("valid").get<bool>());
      ++results;
    } else if (type == "JobError") {
      CHECK(agree_error(body) == entry.at("valid").get<bool>());
      ++errors;
    }
  }
  CHECK(results >= 5);
  CHECK(errors >= 5);
}

TEST_CASE(
    "outcome views: msgpack limits (depth 6 and 7 and str and bin and ext and arrays and maps) as "
    "the decoders") {
  auto nested = [](size_t depth) {  // the body map is the first container
    return result_with("x", [&](Packer& pk) {
      for (size_t i = 1; i < depth; ++i) pk.pack_array(1);
      pk.pack_nil();
    });
  };
  CHECK(agree_result(nested(L::kMaxDepth)));
  CHECK_FALSE(agree_result(nested(L::kMaxDepth + 1)));
  // An empty container counts for the depth too.
  auto nested_empty = [](size_t depth) {
    return result_with("x", [&](Packer& pk) {
      for (size_t i = 2; i < depth; ++i) pk.pack_array(1);
      pk.pack_map(0);
    });
  };
  CHECK(agree_result(nested_empty(L::kMaxDepth)));
  CHECK_FALSE(agree_result(nested_empty(L::kMaxDepth + 1)));
  CHECK(agree_result(result_with("x", [](Packer& pk) { str(pk, std::string(L::kMaxStr, 's')); })));
  CHECK_FALSE(agree_result(
      result_with("x", [](Packer& pk) { str(pk, std::string(L::kMaxStr + 1, 's')); })));
  CHECK_FALSE(agree_result(result_with("x", [](Packer& pk) {
    pk.pack_ext(1, 7);
    pk.pack_ext_body("a", 1);
  })));
  CHECK_FALSE(agree_result(result_with("x", [](Packer& pk) { pk.pack_ext(0, 7); })));
  auto array = [](size_t n) {
    return result_with("x", [&](Packer& pk) {
      pk.pack_array(static_cast<uint32_t>(n));
      for (size_t i = 0; i < n; ++i) pk.pack_nil();
    });
  };
  CHECK(agree_result(array(L::kMaxArray)));
  CHECK_FALSE(agree_result(array(L::kMaxArray + 1)));
  auto map = [](size_t n) {
    return result_with("x", [&](Packer& pk) {
      pk.pack_map(static_cast<uint32_t>(n));
      for (size_t i = 0; i < n; ++i) {
        pk.pack(static_cast<uint64_t>(i));  // keys of an unknown field's map may be anything
        pk.pack_nil();
      }
    });
  };
  CHECK(agree_result(map(L::kMaxMap)));
  CHECK_FALSE(agree_result(map(L::kMaxMap + 1)));
  // A body over the frame limit, and an empty one.
  CHECK_FALSE(agree_result(std::string(L::kMaxFrameBytes + 1, '\xc0')));
  CHECK_FALSE(agree_result(""));
}

TEST_CASE(
    "outcome views: malformed bodies (truncated or trailing bytes or 0xc1 or not a map) are "
    "refused") {
  const std::string good = sc::encode(full_result());
  for (size_t n = 0; n < good.size(); ++n) CHECK_FALSE(agree_result(good.substr(0, n)));
  CHECK_FALSE(agree_result(good + '\xc0'));
  CHECK_FALSE(
      agree_result(result_with("x", [](Packer& pk) { pk.pack_nil(); }).substr(0, 8) + "\xc1"));
  CHECK_FALSE(agree_result(pack([](Packer& pk) { pk.pack_array(0); })));
  CHECK_FALSE(agree_error(pack([](Packer& pk) { str(pk, "job_id"); })));
  const std::string error = sc::encode(full_error());
  for (size_t n = 0; n < error.size(); ++n) CHECK_FALSE(agree_error(error.substr(0, n)));
}

TEST_CASE(
    "outcome views: keys that are not strings or given twice (empty ones and in nested maps too) "
    "as the decoders") {
  // A non-string key at the top, and in timings.
  CHECK_FALSE(agree_result(pack([](Packer& pk) {
    pk.pack_map(2);
    str(pk, "job_id");
    str(pk, "j");
    pk.pack(1);
    pk.pack_nil();
  })));
  CHECK_FALSE(agree_result(result_with("timings", [](Packer& pk) {
    pk.pack_map(1);
    pk.pack(1);
    pk.pack(2);
  })));
  // Twice: a known key (even when one is nil), an unknown key, the empty key.
  for (const char* key : {"exit_code", "unknown", ""}) {
    CAPTURE(key);
    CHECK_FALSE(agree_result(pack([&](Packer& pk) {
      pk.pack_map(3);
      str(pk, "job_id");
      str(pk, "j");
      str(pk, key);
      pk.pack_nil();
      str(pk, key);
      pk.pack(0);
    })));
  }
  CHECK_FALSE(agree_result(result_with("usage", [](Packer& pk) {
    pk.pack_map(2);
    str(pk, "cpu_us");
    pk.pack(1);
    str(pk, "cpu_us");
    pk.pack(1);
  })));
  CHECK_FALSE(agree_result(result_with("files", [](Packer& pk) {
    pk.pack_array(1);
    pk.pack_map(2);
    str(pk, "path");
    str(pk, "a");
    str(pk, "path");
    str(pk, "b");
  })));
}

TEST_CASE("outcome views: field types and ranges and required fields as the decoders") {
  using Fill = std::function<void(Packer&)>;
  const Fill nil = [](Packer& pk) { pk.pack_nil(); };
  const Fill neg = [](Packer& pk) { pk.pack(-1); };
  const Fill big = [](Packer& pk) { pk.pack(UINT64_MAX); };
  const Fill text = [](Packer& pk) { str(pk, "x"); };
  const Fill yes = [](Packer& pk) { pk.pack_true(); };
  const Fill real = [](Packer& pk) { pk.pack_double(1.5); };
  const Fill empty_map = [](Packer& pk) { pk.pack_map(0); };
  const Fill empty_array = [](Packer& pk) { pk.pack_array(0); };
  const Fill i32_min = [](Packer& pk) { pk.pack(int64_t{INT32_MIN}); };
  const Fill past_i32 = [](Packer& pk) { pk.pack(int64_t{INT32_MIN} - 1); };
  const Fill s129 = [](Packer& pk) { pk.pack(129); };
  const Fill bin = [](Packer& pk) {
    pk.pack_bin(1);
    pk.pack_bin_body("b", 1);
  };
  const std::vector<Fill> fills = {nil,       neg,         big,     text,     yes,  real,
                                   empty_map, empty_array, i32_min, past_i32, s129, bin};
  const std::vector<std::string> result_keys = {"exit_code",
                                                "signal",
                                                "stdout",
                                                "stderr",
                                                "stdout_truncated",
                                                "stderr_truncated",
                                                "timed_out",
                                                "oom_killed",
                                                "files",
                                                "timings",
                                                "usage",
                                                "worker_id",
                                                "attempt",
                                                "warm",
                                                "backend",
                                                "template",
                                                "unknown"};
  size_t accepted = 0;
  size_t refused = 0;
  for (const auto& key : result_keys) {
    for (const auto& fill : fills) {
      CAPTURE(key);
      (agree_result(result_with(key, fill)) ? accepted : refused)++;
    }
  }
  CHECK(accepted > 0);
  CHECK(refused > 0);
  // Every ERROR field with every kind of value, the others valid.
  const std::vector<std::string> error_keys = {
      "job_id", "code",      "variant", "message",   "vm_id", "snapshot_id", "from",
      "to",     "worker_id", "attempt", "retryable", "index", "unknown"};
  for (const auto& key : error_keys) {
    for (const auto& fill : fills) {
      CAPTURE(key);
      agree_error(pack([&](Packer& pk) {
        pk.pack_map(key == "code" || key == "variant" ? 2 : 3);
        if (key != "code") {
          str(pk, "code");
          pk.pack(9);
        }
        if (key != "variant") {
          str(pk, "variant");
          str(pk, "Shutdown");
        }
        str(pk, key);
        fill(pk);
      }));
    }
  }
  // Required: a RESULT's job_id, an ERROR's code and variant; nil is absent.
  CHECK_FALSE(agree_result(pack([](Packer& pk) { pk.pack_map(0); })));
  CHECK_FALSE(agree_result(pack([](Packer& pk) {
    pk.pack_map(1);
    str(pk, "job_id");
    pk.pack_nil();
  })));
  CHECK(agree_error(pack([](Packer& pk) {
    pk.pack_map(2);
    str(pk, "code");
    pk.pack(65535);
    str(pk, "variant");
    str(pk, "");
  })));
  CHECK_FALSE(agree_error(pack([](Packer& pk) {
    pk.pack_map(1);
    str(pk, "code");
    pk.pack(1);
  })));
  // Lengths one past each limit.
  CHECK_FALSE(agree_result(pack([](Packer& pk) {
    pk.pack_map(1);
    str(pk, "job_id");
    str(pk, std::string(L::kMaxJobId + 1, 'j'));
  })));
  CHECK(agree_result(result_with("backend", [](Packer& pk) { str(pk, std::string(32, 'b')); })));
  CHECK_FALSE(
      agree_result(result_with("backend", [](Packer& pk) { str(pk, std::string(33, 'b')); })));
  CHECK_FALSE(agree_result(result_with("files", [](Packer& pk) {
    pk.pack_array(L::kMaxFiles + 1);
    for (size_t i = 0; i <= L::kMaxFiles; ++i) {
      pk.pack_map(1);
      str(pk, "path");
      str(pk, "a");
    }
  })));
}

TEST_CASE(
    "outcome views: 50000 mutations of valid bodies are accepted and refused as the decoders") {
  std::vector<std::string> seeds = {sc::encode(full_result()), sc::encode(full_error())};
  sc::JobResult minimal;
  minimal.job_id = "m";
  seeds.push_back(sc::encode(minimal));
  sc::JobError lost;
  lost.code = 102;
  lost.variant = "WorkerLost";
  seeds.push_back(sc::encode(lost));
  std::mt19937 rng(8);  // fixed: the same mutations every run
  size_t accepted = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string body = seeds[static_cast<size_t>(i) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 4) {
        case 0:
          body[at] = static_cast<char>(rng());
          break;  // a byte changed
        case 1:
          body[at] = static_cast<char>(body[at] ^ (1 << (rng() % 8)));
          break;  // a bit
        case 2:
          body.erase(at, 1 + rng() % 3);
          break;  // bytes dropped
        default:
          body.insert(at, 1, static_cast<char>(rng()));
          break;  // a byte inserted
      }
    }
    const bool is_result = i % 2 == 0;
    const bool ok = is_result ? agree_result(body) : agree_error(body);
    if (ok) ++accepted;
  }
  // Both branches were exercised (a mutation often keeps a body valid: a changed string byte).
  CHECK(accepted > 1000);
}

TEST_CASE("encode_job_dispatch: the bytes encode(JobDispatch) writes around the request as given") {
  sc::JobRequest request;
  request.job_id = "d-1";
  request.argv = {"sh", "-c", "true"};
  request.env = {{"A", "b"}};
  const std::string encoded = sc::encode(request);
  sc::JobDispatch d;
  d.attempt = 3;
  d.queued_us = 123456789;
  d.request = request;
  CHECK(sc::encode_job_dispatch(3, 123456789, encoded) == sc::encode(d));
  // A request as a submitter may encode it (defaults omitted, an unknown key): sent as it is, and
  // the worker decodes the same request.
  const std::string sparse = pack([](Packer& pk) {
    pk.pack_map(3);
    str(pk, "job_id");
    str(pk, "d-2");
    str(pk, "argv");
    pk.pack_array(1);
    str(pk, "true");
    str(pk, "future_field");
    pk.pack(1);
  });
  const std::string body = sc::encode_job_dispatch(1, 0, sparse);
  CHECK(body.find(sparse) != std::string::npos);
  auto back = sc::decode_job_dispatch(body);
  REQUIRE(back);
  CHECK(back->attempt == 1);
  CHECK(back->request == *sc::decode_job_request(sparse));
}
