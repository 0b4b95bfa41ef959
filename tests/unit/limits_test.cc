// Limits that compose (schemas/limits.h; issue 20): walks a job's hops, client -> broker (SUBMIT)
// -> worker (JOB) -> agent (exec frame) -> worker (result frame) -> broker -> client (RESULT), each
// at its limits, and checks that what one hop accepts the next carries. Also the contract's text
// rules shared by every decoder (UTF-8), PING bodies, the worker's last resort for a JOB it cannot
// decode (peek_dispatch), and the egress rule shared with the runtime.
#include <doctest/doctest.h>

#include <msgpack.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "agent/result_check.h"
#include "codec_builders.h"
#include "paddock/agent/protocol.h"
#include "paddock/runtime/network.h"
#include "paddock/schemas/cidr.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/schemas/outcome_view.h"

namespace {

namespace sc = paddock::schemas;
namespace L = paddock::schemas::limits;
namespace agent = paddock::runtime::agent;
using paddock::test::pack;
using paddock::test::pack_str;

// A minimal request with one unknown key "pad" holding a bin that brings the body to `total` bytes.
std::string padded_request(size_t total) {
  auto body = [](size_t pad) {
    return pack([&](auto& pk) {
      pk.pack_map(3);
      pack_str(pk, "job_id");
      pack_str(pk, "big");
      pack_str(pk, "argv");
      pk.pack_array(1);
      pack_str(pk, "true");
      pack_str(pk, "pad");
      pk.pack_bin(static_cast<uint32_t>(pad));
      const std::string bytes(pad, 'p');
      pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
    });
  };
  const size_t overhead = body(1u << 16).size() - (1u << 16);  // bin32 header from 64 KiB on
  std::string out = body(total - overhead);
  REQUIRE(out.size() == total);
  return out;
}

// The reproduction: {job_id, argv, x: [[[[[nil]]]]]}, `depth` containers deep in all.
std::string nested_request(size_t depth) {
  return pack([&](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, "deep5");
    pack_str(pk, "argv");
    pk.pack_array(1);
    pack_str(pk, "true");
    pack_str(pk, "x");
    for (size_t i = 1; i < depth; ++i) pk.pack_array(1);
    pk.pack_nil();
  });
}

sc::JobResult result_at_every_limit(size_t data_per_stream) {
  sc::JobResult r;
  r.job_id = std::string(L::kMaxJobId, 'j');
  r.exit_code = INT32_MIN;
  r.signal = 128;
  r.stdout_data = std::string(data_per_stream, 'o');
  r.stderr_data = std::string(data_per_stream, 'e');
  r.stdout_truncated = r.stderr_truncated = r.timed_out = r.oom_killed = true;
  for (size_t i = 0; i < L::kMaxFiles; ++i) {
    std::string path = std::to_string(i) + "/";
    path += std::string(L::kMaxPath - path.size(), 'p');
    // The first file at the cap, the others smaller (enough to be cut; less memory under ASan).
    const size_t data = i == 0 ? data_per_stream : std::min<size_t>(data_per_stream, 64u << 10);
    r.files.push_back(sc::FileOut{path, std::string(data, 'f'), true});
  }
  r.timings = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  r.usage = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  r.worker_id = std::string(L::kMaxWorkerId, 'w');
  r.attempt = UINT32_MAX;
  r.warm = true;
  r.backend = std::string(32, 'b');
  r.template_vm = std::string(L::kMaxTemplate, 't');
  return r;
}

}  // namespace

TEST_CASE("limits compose: client -> broker -> JOB -> worker, at the request size limit") {
  // The JOB wrapper's real cost at its widest is within the reserved overhead.
  CHECK(sc::encode_job_dispatch(UINT32_MAX, UINT64_MAX, "").size() <= L::kMaxDispatchOverhead);

  const std::string at_limit = padded_request(L::kMaxRequestBytes);
  REQUIRE(sc::decode_job_request(at_limit));  // the broker accepts it ...
  const std::string job = sc::encode_job_dispatch(UINT32_MAX, UINT64_MAX, at_limit);
  CHECK(job.size() <= L::kMaxFrameBytes);  // ... its JOB fits one frame ...
  const auto frames = sc::make_message(sc::Command::kJob, {job});
  const std::vector<std::string_view> views(frames.begin(), frames.end());
  CHECK(sc::parse_envelope(views, sc::Direction::kBrokerToWorker));
  auto d = sc::decode_job_dispatch(job);  // ... and the worker decodes it.
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->request.job_id == "big");

  // One byte more is refused at SUBMIT, naming the body, instead of being lost on the way.
  auto over = sc::decode_job_request(padded_request(L::kMaxRequestBytes + 1));
  REQUIRE_FALSE(over);
  CHECK(over.error().field == "body");
  CHECK(over.error().reason.find(std::to_string(L::kMaxRequestBytes)) != std::string::npos);
}

TEST_CASE("limits compose: a request at the nesting limit decodes inside its JOB") {
  // Issue 20, item 1: accepted at depth 6, then dropped by the worker (the JOB adds a level).
  const std::string deep = nested_request(L::kMaxDepth);
  REQUIRE(sc::decode_job_request(deep));
  auto d = sc::decode_job_dispatch(sc::encode_job_dispatch(1, 0, deep));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->request.job_id == "deep5");
  // One level more is refused at SUBMIT already, and so inside a JOB too.
  const std::string deeper = nested_request(L::kMaxDepth + 1);
  CHECK(sc::decode_job_request(deeper).error().field == "body");
  CHECK(sc::decode_job_dispatch(sc::encode_job_dispatch(1, 0, deeper)).error().field == "body");
}

TEST_CASE("limits compose: worker -> agent -> worker, the agent's frames carry a whole job") {
  // The exec request holds the job's fields (at most a whole request) and a few of its own.
  static_assert(agent::limits::kMaxFrameBytes >= L::kMaxRequestBytes + (64u << 10));
  static_assert(agent::limits::kMaxArgv == L::kMaxArgv && agent::limits::kMaxArg == L::kMaxArg &&
                agent::limits::kMaxArgvTotal == L::kMaxArgvTotal);
  static_assert(agent::limits::kMaxEnv == L::kMaxEnv &&
                agent::limits::kMaxEnvKey == L::kMaxEnvKey &&
                agent::limits::kMaxEnvValue == L::kMaxEnvValue);
  static_assert(
      agent::limits::kMaxStdin == L::kMaxStdin && agent::limits::kMaxFiles == L::kMaxFiles &&
      agent::limits::kMaxFilesTotal == L::kMaxFilesTotal && agent::limits::kMaxPath == L::kMaxPath);
  static_assert(agent::limits::kMaxTimeoutMs == L::kMaxTimeoutMs &&
                agent::limits::kMaxOutputCap == L::kMaxOutputCap);
  static_assert(agent::limits::kMaxDepth >= L::kMaxDepth);
  // The agent's largest result (two streams at their cap, the files out at theirs in all) fits
  // its frame, with room for 64 paths and the other fields.
  static_assert(2 * size_t{agent::limits::kMaxOutputCap} + agent::limits::kMaxFilesOutTotal +
                    (1u << 20) <=
                agent::limits::kMaxFrameBytes);
  // The host cuts it to the contract's RESULT budget.
  static_assert(agent::host_limits::kMaxResultData == L::kMaxResultData);
  CHECK(true);
}

TEST_CASE("limits compose: worker -> broker -> client, a RESULT at every limit fits one frame") {
  // Everything but the data: measured, within the reserved overhead.
  const std::string bare = sc::encode(result_at_every_limit(0));
  MESSAGE("RESULT overhead at every limit: " << bare.size() << " bytes");
  CHECK(bare.size() <= L::kMaxResultOverhead);

  // Every stream and file at the largest output_cap: far over a frame until fit_result cuts it.
  sc::JobResult r = result_at_every_limit(L::kMaxOutputCap);
  sc::fit_result(r, L::kMaxOutputCap);
  CHECK(r.stdout_data.size() == L::kMaxOutputCap);  // kept first
  CHECK(r.stderr_data.size() == L::kMaxResultData - L::kMaxOutputCap);
  CHECK(r.stderr_truncated);
  for (const auto& f : r.files) {
    CHECK(f.data.empty());
    CHECK(f.truncated);
  }
  const std::string body = sc::encode(r);
  CHECK(body.size() <= L::kMaxFrameBytes);
  auto decoded = sc::decode_job_result(body);  // the client's decoder
  REQUIRE_MESSAGE(decoded, decoded.error().message());
  CHECK(decoded.value() == r);
  auto view = sc::view_job_result(body);  // the broker's check before it forwards the body
  REQUIRE_MESSAGE(view, view.error().message());
  for (const auto dir : {sc::Direction::kWorkerToBroker, sc::Direction::kBrokerToClient}) {
    const auto frames = sc::make_message(sc::Command::kResult, {body});
    const std::vector<std::string_view> views(frames.begin(), frames.end());
    CHECK(sc::parse_envelope(views, dir));
  }

  // The case: 8 MiB of stdout and one 8 MiB file out; stdout whole, the file cut.
  sc::JobResult two;
  two.job_id = "both-max";
  two.stdout_data = std::string(L::kMaxOutputCap, 'o');
  two.files = {sc::FileOut{"in", std::string(L::kMaxOutputCap, 'f'), false}};
  CHECK(sc::encode(two).size() > L::kMaxFrameBytes);  // what used to be sent and dropped
  sc::fit_result(two, L::kMaxOutputCap);
  CHECK_FALSE(two.stdout_truncated);
  CHECK(two.files[0].truncated);
  CHECK(two.files[0].data.size() == L::kMaxResultData - L::kMaxOutputCap);
  CHECK(sc::encode(two).size() <= L::kMaxFrameBytes);

  // An ERROR at every limit fits too.
  sc::JobError e;
  e.job_id = std::string(L::kMaxJobId, 'j');
  e.code = 65535;
  e.variant = std::string(64, 'v');
  e.message = std::string(L::kMaxMessage, 'm');
  e.vm_id = e.snapshot_id = e.from = e.to = std::string(256, 's');
  e.worker_id = std::string(L::kMaxWorkerId, 'w');
  e.attempt = UINT32_MAX;
  CHECK(sc::encode(e).size() <= L::kMaxResultOverhead);
  CHECK(sc::decode_job_error(sc::encode(e)));
}

// ==== text: UTF-8 ================================================================================

TEST_CASE("utf8: valid_utf8 follows RFC 3629") {
  CHECK(sc::valid_utf8(""));
  CHECK(sc::valid_utf8("plain ascii"));
  CHECK(sc::valid_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK(sc::valid_utf8("\xf4\x8f\xbf\xbf"));        // U+10FFFF
  CHECK_FALSE(sc::valid_utf8("\xc3\x28"));          // the job_id
  CHECK_FALSE(sc::valid_utf8("\xc3"));              // truncated
  CHECK_FALSE(sc::valid_utf8("\x80"));              // a lone continuation byte
  CHECK_FALSE(sc::valid_utf8("\xc0\xaf"));          // overlong '/'
  CHECK_FALSE(sc::valid_utf8("\xe0\x80\xaf"));      // overlong
  CHECK_FALSE(sc::valid_utf8("\xed\xa0\x80"));      // a surrogate
  CHECK_FALSE(sc::valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  CHECK_FALSE(sc::valid_utf8("\xff"));
}

TEST_CASE("utf8: decoders refuse invalid UTF-8 in str fields and keys, naming them") {
  // Issue 20, item 8: CANCEL {job_id: c3 28} came back in ERROR 105.
  auto ref = sc::decode_job_ref(pack([](auto& pk) {
    pk.pack_map(1);
    pack_str(pk, "job_id");
    pack_str(pk, "\xc3\x28");
  }));
  REQUIRE_FALSE(ref);
  CHECK(ref.error().field == "job_id");
  CHECK(ref.error().reason == "not valid UTF-8");
  // A JobRef's job_id follows a JobRequest's rule: an id no job can have is refused.
  CHECK(sc::decode_job_ref(sc::encode(sc::JobRef{"a b", {}})).error().field == "job_id");

  auto request_with = [](std::string_view key,
                         const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& value) {
    return pack([&](auto& pk) {
      pk.pack_map(3);
      pack_str(pk, "job_id");
      pack_str(pk, "u");
      pack_str(pk, "argv");
      pk.pack_array(2);
      pack_str(pk, "echo");
      pack_str(pk, "ok");
      pack_str(pk, key);
      value(pk);
    });
  };
  auto field_of = [](const std::string& body) {
    auto d = sc::decode_job_request(body);
    return d ? std::string() : d.error().field;
  };
  CHECK(field_of(request_with("env", [](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "LANG");
          pack_str(pk, "\xff");
        })) == "env.LANG");
  CHECK(field_of(request_with("tags", [](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "\xc3\x28");
          pack_str(pk, "v");
        })) == "tags");
  CHECK(field_of(request_with("files_out", [](auto& pk) {
          pk.pack_array(1);
          pack_str(pk, "a\xed\xa0\x80");
        })) == "files_out[0]");
  CHECK(field_of(request_with("\xc3\x28", [](auto& pk) { pk.pack_nil(); })) == "body");
  // Bytes stay bytes, whether sent as bin or as str.
  CHECK(field_of(request_with("stdin", [](auto& pk) { pack_str(pk, "\xff\xfe"); })) == "");
  // validate() refuses what the decoder would, for a client before it sends.
  sc::JobRequest r;
  r.job_id = "u";
  r.argv = {"echo", "\xc3\x28"};
  REQUIRE(sc::validate(r));
  CHECK(sc::validate(r)->field == "argv[1]");

  // The broker's in-place check of a worker's RESULT refuses what the decoder refuses.
  sc::JobResult res;
  res.job_id = "u";
  std::string body = sc::encode(res);
  const std::string backend_key = std::string("\xa7") + "backend";
  const size_t at = body.find(backend_key);
  REQUIRE(at != std::string::npos);
  body.replace(at + backend_key.size(), 1, std::string("\xa2\xc3\x28", 3));  // "" -> c3 28
  CHECK(sc::decode_job_result(body).error().field == "backend");
  CHECK(sc::view_job_result(body).error().field == "backend");
}

TEST_CASE("utf8: encoders write valid UTF-8 whatever they are given, and it decodes") {
  sc::JobError e;
  e.job_id = "j";
  e.code = 13;
  e.variant = "NetworkSetup";
  e.message = "stderr: \xff\xfe then \xc3\xa9";
  auto d = sc::decode_job_error(sc::encode(e));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->message == "stderr: \xef\xbf\xbd\xef\xbf\xbd then \xc3\xa9");
  // utf8_prefix cuts at a character boundary within the limit.
  const std::string long_text = std::string(4095, 'a') + "\xc3\xa9" + "tail";
  const std::string cut = sc::utf8_prefix(long_text, L::kMaxMessage);
  CHECK(cut == std::string(4095, 'a'));
  CHECK(sc::utf8_prefix(std::string(5000, '\xff'), 4096).size() <= 4096);
  CHECK(sc::valid_utf8(sc::utf8_prefix(std::string(5000, '\xff'), 4096)));
}

// ==== PING bodies ================================================================================

TEST_CASE("ping: a PING body is a map with string keys within the decoder's limits") {
  // Issue 20, item 3: each of these came back in a PONG.
  const std::string good = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "n");
    pk.pack(7);
    pack_str(pk, "nested");
    pk.pack_map(1);
    pack_str(pk, "k");
    pk.pack_array(2);
    pack_str(pk, "h\xc3\xa9");
    pk.pack_nil();
  });
  CHECK_FALSE(sc::check_any_map(good));
  CHECK_FALSE(sc::check_any_map(sc::encode(sc::JobRef{"x", {}})));
  auto refused = [](const std::string& body) {
    auto err = sc::check_any_map(body);
    return err ? err->field : std::string("accepted");
  };
  CHECK(refused(good.substr(0, good.size() - 1)) == "body");         // truncated
  CHECK(refused(good + "\xc0") == "body");                           // trailing bytes
  CHECK(refused(std::string("\xdf\x00\x01\x00\x00", 5)) == "body");  // map32 of 65536: over kMaxMap
  CHECK(refused(std::string("\xdf\x00\x00\x00\x02", 5)) ==
        "body");  // map32 with its entries missing
  std::string nested_maps;
  for (int i = 0; i < 10'000; ++i) nested_maps += "\x81\xa1k";
  nested_maps += '\xc0';
  CHECK(refused(nested_maps) == "body");                               // 10,000 nested maps
  CHECK(refused(pack([](auto& pk) { pk.pack_array(0); })) == "body");  // not a map
  CHECK(refused(pack([](auto& pk) {
          pk.pack_map(1);
          pk.pack(1);
          pk.pack(2);
        })) == "body");  // an integer key
  CHECK(refused(pack([](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "m");
          pk.pack_map(1);
          pk.pack(1);
          pk.pack(2);
        })) == "body");  // an integer key further down
  CHECK(refused(pack([](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "s");
          pack_str(pk, "\xc3\x28");
        })) == "body");  // a string that is not UTF-8
  CHECK(refused(pack([](auto& pk) {
          pk.pack_map(2);
          pack_str(pk, "a");
          pk.pack_nil();
          pack_str(pk, "a");
          pk.pack_nil();
        })) == "a");  // a key given twice
}

// ==== a JOB the worker cannot decode ============================================================

TEST_CASE("peek_dispatch: the job and attempt of a JOB too broken to decode") {
  sc::JobDispatch d;
  d.attempt = 3;
  d.request.job_id = "held-1";
  d.request.argv = {"true"};
  d.request.vcpus = 99;  // out of range: decode_job_dispatch refuses it
  const std::string body = sc::encode(d);
  REQUIRE_FALSE(sc::decode_job_dispatch(body));
  auto ref = sc::peek_dispatch(body);
  REQUIRE(ref);
  CHECK(ref->job_id == "held-1");
  CHECK(ref->attempt == 3);
  // Whatever follows the job_id may be broken: cut the body short.
  auto cut = sc::peek_dispatch(body.substr(0, body.find("held-1") + 6));
  REQUIRE(cut);
  CHECK(cut->job_id == "held-1");
  // A body over the frame limit (ZMQ_MAXMSGSIZE lets 64 KiB more through) still names its job.
  d.request.files = {sc::FileIn{"pad", 0644, std::string(L::kMaxFrameBytes, 'p')}};
  const std::string oversized = sc::encode(d);
  REQUIRE(oversized.size() > L::kMaxFrameBytes);
  auto big = sc::peek_dispatch(oversized);
  REQUIRE(big);
  CHECK(big->job_id == "held-1");
  d.request.files.clear();
  // Nothing to name: nullopt.
  CHECK_FALSE(sc::peek_dispatch(""));
  CHECK_FALSE(sc::peek_dispatch("\x93\x01\x02\x03"));
  d.request.job_id = "bad id";
  CHECK_FALSE(sc::peek_dispatch(sc::encode(d)));
  d.request.job_id = "ok";
  d.attempt = 0;
  CHECK_FALSE(sc::peek_dispatch(sc::encode(d)));
}

// ==== egress: one rule for SUBMIT and the runtime ================================================

TEST_CASE("egress: SUBMIT refuses exactly the CIDRs the worker's runtime refuses") {
  // Issue 20, item 7: 10.0.0.1/8 passed SUBMIT and failed on a worker as Firewall, retryable.
  auto submit_refuses = [](const std::string& cidr) {
    sc::JobRequest r;
    r.job_id = "e";
    r.argv = {"true"};
    r.egress = {sc::EgressRule{cidr, "tcp", {}}};
    auto err = sc::validate(r);
    if (err) CHECK(err->field == "egress[0].cidr");
    return err.has_value();
  };
  auto runtime_refuses = [](const std::string& cidr) {
    return !paddock::runtime::net::parse_cidr(cidr).has_value();
  };
  sc::JobRequest host_bits;
  host_bits.job_id = "e";
  host_bits.argv = {"true"};
  host_bits.egress = {sc::EgressRule{"10.0.0.1/8", "tcp", {}}};
  REQUIRE(sc::validate(host_bits));
  CHECK(sc::validate(host_bits)->message() ==
        "egress[0].cidr: has bits set past its /8 prefix (did you mean 10.0.0.0/8?)");

  std::vector<std::string> cases = {"10.0.0.0/8",
                                    "10.0.0.1/8",
                                    "10.0.0.1",
                                    "0.0.0.0/0",
                                    "1.0.0.0/0",
                                    "255.255.255.255/32",
                                    "1.2.3.4/33",
                                    "1.2.3.4/",
                                    "1.2.3.4/08",
                                    "010.0.0.0/8",
                                    "1.2.3",
                                    "1.2.3.4.5",
                                    "::1",
                                    "",
                                    " 1.2.3.4",
                                    "1.2.3.4/8/8",
                                    "256.0.0.0",
                                    "1.2.3.4/-1",
                                    "192.168.1.128/25",
                                    "192.168.1.129/25",
                                    std::string("1.2.3.4\0", 8),
                                    "1..2.3",
                                    "1.2.3.4/0",
                                    "0.0.0.0",
                                    "9999.0.0.0"};
  // And random strings over the characters a CIDR is made of.
  std::mt19937 rng(20);
  const std::string alphabet = "0123456789./";
  for (int i = 0; i < 5000; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    cases.push_back(s);
  }
  for (const auto& c : cases) {
    INFO("cidr '" << c << "'");
    CHECK(submit_refuses(c) == runtime_refuses(c));
  }
}
