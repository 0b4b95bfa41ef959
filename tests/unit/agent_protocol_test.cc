// The guest agent protocol codec (agent/include/paddock/agent/protocol.h): framing, round trips,
// limits, and what the decoders say about truncated, oversized and garbage input.
#include <doctest/doctest.h>

#include <msgpack.hpp>

#include <functional>
#include <map>
#include <string>

#include "agent_msgpack.h"
#include "paddock/agent/protocol.h"

namespace agent = paddock::runtime::agent;
using agent::limits::kMaxFrameBytes;

namespace {

using paddock::testing::body;
using paddock::testing::kv;
using paddock::testing::Packer;

std::string exec_body(uint32_t n, const std::function<void(Packer&)>& fields) {
  return body(n + 1, [&](Packer& pk) {
    kv(pk, "op", std::string("exec"));
    fields(pk);
  });
}

agent::DecodeError request_error(const std::string& b) {
  auto d = agent::decode_request(b);
  REQUIRE_FALSE(d.ok());
  return d.error();
}

agent::ExecCommand full_command() {
  agent::ExecCommand c;
  c.argv = {"/bin/echo", "hello", std::string("\xff\x01", 2)};
  c.env = {{"A", "1"}, {"PATH", "/bin"}};
  c.cwd = "/work/sub";
  c.stdin_data = std::string("in\0put", 6);
  c.files = {{"a.txt", 0600, std::string("x\0y", 3)}, {"dir/b", 0755, ""}};
  c.files_out = {"out.txt", "d/e/f"};
  c.timeout_ms = 1234;
  c.output_cap = 99;
  c.files_out_cap = 5;
  return c;
}

}  // namespace

TEST_CASE("agent frames: big-endian length, then the body") {
  const std::string f = agent::frame("abc");
  CHECK(f == std::string("\0\0\0\3abc", 7));
  const std::string big(0x01020304 & 0xFFFF, 'x');
  const std::string g = agent::frame(big);
  CHECK(static_cast<unsigned char>(g[2]) == 0x03);
  CHECK(static_cast<unsigned char>(g[3]) == 0x04);
}

TEST_CASE("agent FrameReader takes frames fed byte by byte and several at once") {
  const std::string stream = agent::frame("one") + agent::frame("two!") + agent::frame("3");
  agent::FrameReader r;
  std::vector<std::string> got;
  for (char c : stream) {
    r.feed(std::string_view(&c, 1));
    while (auto f = r.next()) {
      REQUIRE(f->ok());
      got.push_back(f->value());
    }
  }
  CHECK(got == std::vector<std::string>{"one", "two!", "3"});
  CHECK_FALSE(r.mid_frame());

  agent::FrameReader all;
  all.feed(stream);
  CHECK(all.next()->value() == "one");
  CHECK(all.next()->value() == "two!");
  CHECK(all.next()->value() == "3");
  CHECK_FALSE(all.next().has_value());
  CHECK(all.buffered() == 0);
}

TEST_CASE("agent FrameReader: a truncated frame waits, and says it is mid-frame") {
  agent::FrameReader r;
  const std::string f = agent::frame("hello");
  r.feed(f.substr(0, 2));
  CHECK_FALSE(r.next().has_value());
  CHECK(r.mid_frame());
  r.feed(f.substr(2, 4));
  CHECK_FALSE(r.next().has_value());
  CHECK(r.mid_frame());
  r.reset();
  CHECK_FALSE(r.mid_frame());
  r.feed(agent::frame("again"));
  CHECK(r.next()->value() == "again");
}

TEST_CASE("agent FrameReader refuses empty and oversized frames and stays in step") {
  agent::FrameReader r;
  r.feed(std::string("\0\0\0\0", 4));
  auto e = r.next();
  REQUIRE(e.has_value());
  REQUIRE_FALSE(e->ok());
  CHECK(e->error().field == "frame");
  CHECK(e->error().message() == "frame: empty (length 0)");

  // Oversized: the header, part of its bytes now, the rest later, then a good frame.
  const uint32_t n = kMaxFrameBytes + 1;
  const char hdr[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  r.feed(std::string_view(hdr, 4));
  r.feed(std::string(1000, 'g'));
  e = r.next();
  REQUIRE(e.has_value());
  REQUIRE_FALSE(e->ok());
  CHECK(e->error().reason == "length 33554433 exceeds 33554432");
  CHECK(r.mid_frame());  // still skipping
  const std::string rest(n - 1000, 'g');
  for (size_t off = 0; off < rest.size(); off += 1 << 20) {
    r.feed(std::string_view(rest).substr(off, 1 << 20));
    CHECK_FALSE(r.next().has_value());
  }
  CHECK_FALSE(r.mid_frame());
  r.feed(agent::frame("after"));
  CHECK(r.next()->value() == "after");

  // The largest allowed frame passes.
  agent::FrameReader max;
  max.feed(agent::frame(std::string(kMaxFrameBytes, 'm')));
  auto m = max.next();
  REQUIRE(m.has_value());
  REQUIRE(m->ok());
  CHECK(m->value().size() == kMaxFrameBytes);
}

TEST_CASE("agent requests round-trip: ping, shutdown, exec with every field, script") {
  for (auto op : {agent::Op::kPing, agent::Op::kShutdown}) {
    agent::Request r{42, op, {}, {}};
    auto d = agent::decode_request(agent::encode_request(r));
    REQUIRE(d.ok());
    CHECK(d.value() == r);
  }
  agent::Request exec{1ull << 60, agent::Op::kExec, full_command(), {}};
  auto d = agent::decode_request(agent::encode_request(exec));
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message()));
  CHECK(d.value() == exec);

  agent::Request script{3, agent::Op::kExec, {}, {}};
  script.exec.script = "echo $A; exit 3";
  d = agent::decode_request(agent::encode_request(script));
  REQUIRE(d.ok());
  CHECK(d.value() == script);
  CHECK(d.value().exec.argv.empty());
}

TEST_CASE("agent requests: defaults of the optional fields") {
  auto d = agent::decode_request(exec_body(1, [](Packer& pk) {
    pk.pack(std::string("argv"));
    pk.pack(std::vector<std::string>{"true"});
  }));
  REQUIRE(d.ok());
  const auto& c = d.value().exec;
  CHECK(d.value().id == 7);
  CHECK(c.timeout_ms == 30000);
  CHECK(c.output_cap == 1u << 20);
  CHECK(c.files_out_cap == 1u << 20);
  CHECK(c.cwd.empty());
  CHECK(c.env.empty());
  CHECK(c.files.empty());
  // stdin as str is accepted too; nil is the default.
  d = agent::decode_request(exec_body(3, [](Packer& pk) {
    pk.pack(std::string("argv"));
    pk.pack(std::vector<std::string>{"cat"});
    kv(pk, "stdin", std::string("as str"));
    pk.pack(std::string("cwd"));
    pk.pack_nil();
  }));
  REQUIRE(d.ok());
  CHECK(d.value().exec.stdin_data == "as str");
}

TEST_CASE("agent replies round-trip: pong, result, shutdown, error") {
  agent::Reply pong{5, agent::ReplyKind::kPong, "0.1.0", {}, "", {}, {}};
  agent::Reply bye{6, agent::ReplyKind::kShutdown, "", {}, "", {}, {}};
  agent::Reply err{0, agent::ReplyKind::kError, "", {}, "argv: required (or script)", {}, {}};
  agent::Reply res{9, agent::ReplyKind::kResult, "", {}, "", {}, {}};
  res.result.exit_code = -3;
  res.result.signal = 9;
  res.result.stdout_data = std::string("o\0ut", 4);
  res.result.stderr_data = "err";
  res.result.stdout_truncated = true;
  res.result.timed_out = true;
  res.result.oom_killed = true;
  res.result.files = {{"a/b", "data", true}, {"c", "", false}};
  res.result.usage.cpu_us = 123456789012ull;
  res.result.usage.peak_memory_kib = 2048;
  res.result.exec_us = 77;
  for (const auto& r : {pong, bye, err, res}) {
    auto d = agent::decode_reply(agent::encode_reply(r));
    REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message()));
    CHECK(d.value() == r);
  }
  // An error message is cut at kMaxError so that it always decodes.
  agent::Reply long_err{1, agent::ReplyKind::kError, "", {}, std::string(10000, 'e'), {}, {}};
  auto d = agent::decode_reply(agent::encode_reply(long_err));
  REQUIRE(d.ok());
  CHECK(d.value().error.size() == agent::limits::kMaxError);
}

TEST_CASE("agent decoders: garbage, truncation, trailing bytes, wrong shapes") {
  CHECK(request_error("").message() == "body: empty");
  CHECK(request_error("\xc1").field == "body");  // never-used msgpack byte
  const std::string ping = agent::encode_request({1, agent::Op::kPing, {}, {}});
  CHECK(request_error(ping.substr(0, ping.size() - 1)).message() == "body: truncated msgpack");
  CHECK(request_error(ping + "x").message() == "body: trailing bytes after the msgpack object");
  CHECK(request_error("\x93\x01\x02\x03").message() == "body: expected map, got array");
  CHECK(request_error("\x81\x01\x02").message() == "body: map key is not a string");
  CHECK(request_error("\xd4\x01\x00").field == "body");  // ext types are refused
  CHECK_FALSE(agent::decode_reply("\xc1").ok());
  CHECK_FALSE(agent::decode_reply(ping).ok());  // a request is not a reply (no "ok")
}

TEST_CASE("agent decoders: version, id, op and duplicate keys") {
  CHECK(request_error(body(
                          1, [](Packer& pk) { kv(pk, "op", std::string("ping")); }, 0, false))
            .message() == "v: required");
  auto e = request_error(body(0, [](Packer&) {}));
  CHECK(e.message() == "op: required");
  CHECK(e.id == 7);  // the id was read: the agent can answer it
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(3);
  kv(pk, "v", 2);
  kv(pk, "id", 1);
  kv(pk, "op", std::string("ping"));
  CHECK(request_error(std::string(buf.data(), buf.size())).message() ==
        "v: unsupported version 2 (this side speaks 1)");
  CHECK(request_error(body(1, [](Packer& p) { kv(p, "op", std::string("reboot")); })).message() ==
        "op: unknown op 'reboot'");
  CHECK(request_error(body(2, [](Packer& p) {
          kv(p, "op", std::string("ping"));
          kv(p, "op", std::string("ping"));
        })).message() == "op: duplicate key");
  CHECK(request_error(body(
                          1, [](Packer& p) { kv(p, "id", -1); }, 0, false))
            .message() == "v: required");
}

TEST_CASE("agent exec requests: every bad field is named") {
  const auto err = [](uint32_t n, const std::function<void(Packer&)>& f) {
    return request_error(exec_body(n, f)).message();
  };
  const auto argv = [](Packer& pk) {
    pk.pack(std::string("argv"));
    pk.pack(std::vector<std::string>{"x"});
  };
  CHECK(err(0, [](Packer&) {}) == "argv: required (or script)");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack(std::vector<std::string>{});
        }) == "argv: required (or script)");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "script", std::string("echo"));
        }) == "script: not allowed with argv");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack_array(2);
          pk.pack(std::string("ok"));
          pk.pack(5);
        }) == "argv[1]: expected string, got integer");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack(std::vector<std::string>{""});
        }) == "argv[0]: empty");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack(std::vector<std::string>{"a", std::string("b\0c", 3)});
        }) == "argv[1]: contains NUL");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack(std::vector<std::string>(257, "a"));
        }) == "argv: more than 256 entries");
  CHECK(err(1, [](Packer& pk) {
          pk.pack(std::string("argv"));
          pk.pack(std::vector<std::string>(5, std::string(60000, 'a')));
        }) == "argv: longer than 262144 bytes in all");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "env", std::map<std::string, std::string>{{"A=B", "1"}});
        }) == "env: name 'A=B' is empty or contains '='");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "env", std::map<std::string, int>{{"A", 1}});
        }) == "env.A: expected string, got integer");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "cwd", std::string("relative"));
        }) == "cwd: must be absolute");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "timeout_ms", 0);
        }) == "timeout_ms: must be between 1 and 86400000, got 0");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "output_cap", (8u << 20) + 1);
        }) == "output_cap: must be between 0 and 8388608, got 8388609");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "files_out_cap", -1);
        }) == "files_out_cap: must be between 0 and 8388608");
  CHECK(err(2, [&](Packer& pk) {
          argv(pk);
          kv(pk, "stdin", 3);
        }) == "stdin: expected bytes, got integer");
}

TEST_CASE("agent exec requests: file paths cannot leave the working directory") {
  for (const std::string bad : {"/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", ""}) {
    CAPTURE(bad);
    const auto file = exec_body(2, [&](Packer& pk) {
      pk.pack(std::string("argv"));
      pk.pack(std::vector<std::string>{"x"});
      pk.pack(std::string("files"));
      pk.pack_array(1);
      pk.pack_map(2);
      kv(pk, "path", bad);
      kv(pk, "data", std::string("d"));
    });
    CHECK(request_error(file).field == "files[0].path");
    const auto out = exec_body(2, [&](Packer& pk) {
      pk.pack(std::string("argv"));
      pk.pack(std::vector<std::string>{"x"});
      pk.pack(std::string("files_out"));
      pk.pack(std::vector<std::string>{"fine", bad});
    });
    CHECK(request_error(out).field == "files_out[1]");
  }
  const auto mode = exec_body(2, [&](Packer& pk) {
    pk.pack(std::string("argv"));
    pk.pack(std::vector<std::string>{"x"});
    pk.pack(std::string("files"));
    pk.pack_array(1);
    pk.pack_map(2);
    kv(pk, "path", std::string("a"));
    kv(pk, "mode", 010000);
  });
  CHECK(request_error(mode).message() == "files[0].mode: must be between 0 and 4095, got 4096");
}

TEST_CASE("agent decoders: msgpack limits on depth, counts and sizes") {
  // Depth: 7 nested arrays under the map.
  std::string deep = exec_body(1, [](Packer& pk) {
    pk.pack(std::string("x"));
    for (int i = 0; i < 7; ++i) pk.pack_array(1);
    pk.pack(1);
  });
  CHECK(request_error(deep).message() == "body: nesting deeper than 6");
  // A map of more than 256 entries.
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(300);
  for (int i = 0; i < 300; ++i) kv(pk, "k" + std::to_string(i), i);
  CHECK(request_error(std::string(buf.data(), buf.size())).field == "body");
  // A str over 1 MiB is refused by the unpacker before any field is looked at.
  const auto big =
      exec_body(1, [](Packer& p) { kv(p, "script", std::string((1 << 20) + 1, 's')); });
  CHECK(request_error(big).field == "body");
  // A script under the unpack limit but over its own.
  const auto script = exec_body(1, [](Packer& p) { kv(p, "script", std::string(300000, 's')); });
  CHECK(request_error(script).message() == "script: longer than 262144 bytes");
  // Over the frame size.
  CHECK(request_error(std::string(kMaxFrameBytes + 1, '\x80')).field == "frame");
}

TEST_CASE("agent replies: bad fields are named, files out bounded in all") {
  const auto reply_error = [](const std::string& b) {
    auto d = agent::decode_reply(b);
    REQUIRE_FALSE(d.ok());
    return d.error().message();
  };
  CHECK(reply_error(body(1, [](Packer& pk) { kv(pk, "ok", false); })) == "error: required");
  CHECK(reply_error(body(1, [](Packer& pk) { kv(pk, "ok", true); })) == "op: required");
  CHECK(reply_error(body(3, [](Packer& pk) {
          kv(pk, "ok", true);
          kv(pk, "op", std::string("result"));
          kv(pk, "exit_code", 1ll << 40);
        })) == "exit_code: out of the 32-bit range");
  CHECK(reply_error(body(3, [](Packer& pk) {
          kv(pk, "ok", true);
          kv(pk, "op", std::string("result"));
          kv(pk, "timed_out", 1);
        })) == "timed_out: expected bool, got integer");
  agent::Reply r{1, agent::ReplyKind::kResult, "", {}, "", {}, {}};
  r.result.files = {{"a", std::string(5u << 20, 'a'), false},
                    {"b", std::string(4u << 20, 'b'), false}};
  CHECK(reply_error(agent::encode_reply(r)) == "files: longer than 8388608 bytes in all");
  // Negative exit codes and signals decode.
  agent::Reply neg{1, agent::ReplyKind::kResult, "", {}, "", {}, {}};
  neg.result.exit_code = -2147483647 - 1;
  auto d = agent::decode_reply(agent::encode_reply(neg));
  REQUIRE(d.ok());
  CHECK(d.value().result.exit_code == -2147483647 - 1);
}

TEST_CASE("agent result replies: oom_killed is a bool, absent (an older agent) or nil is false") {
  agent::Reply r{3, agent::ReplyKind::kResult, "", {}, "", {}, {}};
  r.result.exit_code = 137;
  r.result.signal = 9;
  r.result.oom_killed = true;
  const std::string bytes = agent::encode_reply(r);
  auto h = msgpack::unpack(bytes.data(), bytes.size());
  const auto map = h.get().as<std::map<std::string, msgpack::object>>();
  REQUIRE(map.count("oom_killed") == 1);
  CHECK(map.at("oom_killed").type == msgpack::type::BOOLEAN);
  auto d = agent::decode_reply(bytes);
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message()));
  CHECK(d.value().result.oom_killed);
  r.result.oom_killed = false;
  CHECK_FALSE(agent::decode_reply(agent::encode_reply(r)).value().result.oom_killed);

  // What an agent that predates the field sends: no oom_killed at all; or nil.
  auto old = agent::decode_reply(body(4, [](Packer& pk) {
    kv(pk, "ok", true);
    kv(pk, "op", std::string("result"));
    kv(pk, "exit_code", 137);
    kv(pk, "signal", 9);
  }));
  REQUIRE_MESSAGE(old.ok(), (old.ok() ? "" : old.error().message()));
  CHECK(old.value().result.signal == 9);
  CHECK_FALSE(old.value().result.oom_killed);
  auto nil = agent::decode_reply(body(3, [](Packer& pk) {
    kv(pk, "ok", true);
    kv(pk, "op", std::string("result"));
    pk.pack(std::string("oom_killed"));
    pk.pack_nil();
  }));
  REQUIRE(nil.ok());
  CHECK_FALSE(nil.value().result.oom_killed);
  auto wrong = agent::decode_reply(body(3, [](Packer& pk) {
    kv(pk, "ok", true);
    kv(pk, "op", std::string("result"));
    kv(pk, "oom_killed", 1);
  }));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message() == "oom_killed: expected bool, got integer");
}

namespace {

agent::RefreshCommand valid_refresh() {
  agent::RefreshCommand c;
  c.entropy = std::string(32, '\0') + std::string("\xff\x01", 2);
  c.unix_time_ns = 1'700'000'000'123'456'789ull;
  c.hostname = "clone-0042";
  return c;
}

// A refresh request with the fields `fields` packs (n of them).
std::string refresh_body(uint32_t n, const std::function<void(Packer&)>& fields) {
  return body(n + 1, [&](Packer& pk) {
    kv(pk, "op", std::string("refresh"));
    fields(pk);
  });
}

void bin(Packer& pk, const std::string& k, const std::string& v) {
  pk.pack(k);
  pk.pack_bin(static_cast<uint32_t>(v.size()));
  pk.pack_bin_body(v.data(), static_cast<uint32_t>(v.size()));
}

}  // namespace

TEST_CASE("agent refresh: request and refreshed reply round-trip") {
  agent::Request r{11, agent::Op::kRefresh, {}, valid_refresh()};
  CHECK(agent::op_name(agent::Op::kRefresh) == "refresh");
  CHECK(agent::check_refresh(r.refresh).empty());
  auto d = agent::decode_request(agent::encode_request(r));
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message()));
  CHECK(d.value() == r);
  // The limits themselves are allowed.
  r.refresh.entropy = std::string(agent::limits::kMaxEntropy, 'e');
  r.refresh.hostname = std::string(agent::limits::kMaxHostname - 1, 'a') + "-";
  r.refresh.unix_time_ns = ~0ull;
  d = agent::decode_request(agent::encode_request(r));
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message()));
  CHECK(d.value() == r);
  r.refresh.entropy = std::string(agent::limits::kMinEntropy, 'e');
  r.refresh.hostname = "A";
  r.refresh.unix_time_ns = 1;
  d = agent::decode_request(agent::encode_request(r));
  REQUIRE(d.ok());
  CHECK(d.value() == r);

  for (bool applied : {true, false}) {
    agent::Reply reply{12, agent::ReplyKind::kRefreshed, "", {}, "", {}, {}};
    reply.refreshed = {"0a1b2c3d-0000-4000-8000-0123456789ab", "clone-0042", applied};
    auto rd = agent::decode_reply(agent::encode_reply(reply));
    REQUIRE_MESSAGE(rd.ok(), (rd.ok() ? "" : rd.error().message()));
    CHECK(rd.value() == reply);
  }
  // A host's hostname in the test mode may hold dots: a reply takes any string within the limit.
  agent::Reply host{13, agent::ReplyKind::kRefreshed, "", {}, "", {}, {}};
  host.refreshed = {"x", "build.example.org", false};
  auto hd = agent::decode_reply(agent::encode_reply(host));
  REQUIRE(hd.ok());
  CHECK(hd.value() == host);
}

TEST_CASE("agent refresh requests: every bad field is named") {
  const std::string entropy(32, 'e');
  const auto err = [](uint32_t n, const std::function<void(Packer&)>& f) {
    const auto e = request_error(refresh_body(n, f));
    CHECK(e.id == 7);  // the agent answers the request's id
    return e.message();
  };
  // Entropy.
  CHECK(err(2, [](Packer& pk) {
          kv(pk, "unix_time_ns", 1);
          kv(pk, "hostname", std::string("h"));
        }) == "entropy: required");
  CHECK(err(3, [](Packer& pk) {
          bin(pk, "entropy", std::string(31, 'e'));
          kv(pk, "unix_time_ns", 1);
          kv(pk, "hostname", std::string("h"));
        }) == "entropy: shorter than 32 bytes");
  CHECK(err(3, [](Packer& pk) {
          bin(pk, "entropy", std::string(513, 'e'));
          kv(pk, "unix_time_ns", 1);
          kv(pk, "hostname", std::string("h"));
        }) == "entropy: longer than 512 bytes");
  CHECK(err(3, [](Packer& pk) {
          kv(pk, "entropy", 5);
          kv(pk, "unix_time_ns", 1);
          kv(pk, "hostname", std::string("h"));
        }) == "entropy: expected bytes, got integer");
  // unix_time_ns.
  CHECK(err(2, [&](Packer& pk) {
          bin(pk, "entropy", entropy);
          kv(pk, "hostname", std::string("h"));
        }) == "unix_time_ns: required");
  CHECK(err(3, [&](Packer& pk) {
          bin(pk, "entropy", entropy);
          kv(pk, "unix_time_ns", 0);
          kv(pk, "hostname", std::string("h"));
        }) == "unix_time_ns: must not be 0");
  CHECK(err(3, [&](Packer& pk) {
          bin(pk, "entropy", entropy);
          kv(pk, "unix_time_ns", -5);
          kv(pk, "hostname", std::string("h"));
        }) == "unix_time_ns: must be between 0 and 18446744073709551615");
  CHECK(err(3, [&](Packer& pk) {
          bin(pk, "entropy", entropy);
          kv(pk, "unix_time_ns", std::string("now"));
          kv(pk, "hostname", std::string("h"));
        }) == "unix_time_ns: expected integer, got string");
  // hostname.
  const auto host_err = [&](const auto& hostname) {
    return err(3, [&](Packer& pk) {
      bin(pk, "entropy", entropy);
      kv(pk, "unix_time_ns", 1);
      kv(pk, "hostname", hostname);
    });
  };
  CHECK(err(2, [&](Packer& pk) {
          bin(pk, "entropy", entropy);
          kv(pk, "unix_time_ns", 1);
        }) == "hostname: required");
  CHECK(host_err(std::string()) == "hostname: empty");
  CHECK(host_err(std::string(65, 'a')) == "hostname: longer than 64 bytes");
  CHECK(host_err(std::string("-clone")) == "hostname: must not start with '-'");
  for (const std::string bad : {"a.b", "a b", "a_b", "a/b", "\xc3\xa9t\xc3\xa9"}) {
    CAPTURE(bad);
    CHECK(host_err(bad) == "hostname: only A-Z, a-z, 0-9 and '-' allowed");
  }
  CHECK(host_err(std::string("a\0b", 3)) == "hostname: contains NUL");
  CHECK(host_err(7) == "hostname: expected string, got integer");
  // Entropy as str is accepted, like every byte field.
  auto ok = agent::decode_request(refresh_body(3, [&](Packer& pk) {
    kv(pk, "entropy", entropy);
    kv(pk, "unix_time_ns", 1);
    kv(pk, "hostname", std::string("h"));
  }));
  REQUIRE(ok.ok());
  CHECK(ok.value().refresh.entropy == entropy);

  // check_refresh() says what the decoder would.
  auto c = valid_refresh();
  c.entropy.resize(31);
  CHECK(agent::check_refresh(c) == "entropy: shorter than 32 bytes");
  c = valid_refresh();
  c.unix_time_ns = 0;
  CHECK(agent::check_refresh(c) == "unix_time_ns: must not be 0");
  c = valid_refresh();
  c.hostname = "bad.name";
  CHECK(agent::check_refresh(c) == "hostname: only A-Z, a-z, 0-9 and '-' allowed");
}

TEST_CASE("agent refreshed replies: bad fields are named") {
  const auto reply_error = [](uint32_t n, const std::function<void(Packer&)>& f) {
    auto d = agent::decode_reply(body(n + 2, [&](Packer& pk) {
      kv(pk, "ok", true);
      kv(pk, "op", std::string("refreshed"));
      f(pk);
    }));
    REQUIRE_FALSE(d.ok());
    return d.error().message();
  };
  CHECK(reply_error(2, [](Packer& pk) {
          kv(pk, "hostname", std::string("h"));
          kv(pk, "applied", true);
        }) == "boot_id: required");
  CHECK(reply_error(3, [](Packer& pk) {
          kv(pk, "boot_id", std::string(65, 'b'));
          kv(pk, "hostname", std::string("h"));
          kv(pk, "applied", true);
        }) == "boot_id: longer than 64 bytes");
  CHECK(reply_error(2, [](Packer& pk) {
          kv(pk, "boot_id", std::string("b"));
          kv(pk, "applied", true);
        }) == "hostname: required");
  CHECK(reply_error(3, [](Packer& pk) {
          kv(pk, "boot_id", std::string("b"));
          kv(pk, "hostname", std::string(65, 'h'));
          kv(pk, "applied", true);
        }) == "hostname: longer than 64 bytes");
  CHECK(reply_error(2, [](Packer& pk) {
          kv(pk, "boot_id", std::string("b"));
          kv(pk, "hostname", std::string("h"));
        }) == "applied: required");
  CHECK(reply_error(3, [](Packer& pk) {
          kv(pk, "boot_id", std::string("b"));
          kv(pk, "hostname", std::string("h"));
          kv(pk, "applied", 1);
        }) == "applied: expected bool, got integer");
}
