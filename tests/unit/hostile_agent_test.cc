// The host side of the agent protocol (AgentClient) against a hostile guest agent: a FakeAgent
// (fake_agent.h) on a socketpair that sends oversized, truncated, malformed, lying and endless
// replies. Each exec must end with an error naming what was wrong, or a capped result, within a
// bounded time; and afterwards a fresh client to an honest agent must run the next job.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "agent_msgpack.h"
#include "fake_agent.h"
#include "paddock/agent/protocol.h"
#include "paddock/runtime/agent_client.h"

namespace rt = paddock::runtime;
namespace agent = paddock::runtime::agent;
using paddock::testing::body;
using paddock::testing::error_reply;
using paddock::testing::FakeAgent;
using paddock::testing::honest_agent;
using paddock::testing::kv;
using paddock::testing::kv_bin;
using paddock::testing::on_exec;
using paddock::testing::Packer;
using paddock::testing::result_reply;
using paddock::testing::send_then_silence;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

rt::ExecRequest job(std::vector<std::string> argv, uint32_t output_cap = 1u << 20,
                    std::vector<std::string> files_out = {}) {
  rt::ExecRequest r;
  r.argv = std::move(argv);
  r.output_cap = output_cap;
  r.files_out_cap = output_cap;
  r.files_out = std::move(files_out);
  return r;
}

// One AgentClient on a FakeAgent. The client is destroyed first (it closes the host's end).
struct Session {
  FakeAgent agent;
  rt::AgentClient client;
  explicit Session(FakeAgent::Script script) : agent(std::move(script)), client(agent.host_fd()) {}

  Clock::duration took{};
  rt::Result<rt::ExecResult> exec(const rt::ExecRequest& request,
                                  std::chrono::milliseconds deadline = 10s) {
    const auto t0 = Clock::now();
    auto r = client.exec(request, std::stop_token{}, deadline);
    took = Clock::now() - t0;
    return r;
  }
  // The error of an exec that must fail.
  std::string exec_error(const rt::ExecRequest& request, std::chrono::milliseconds deadline = 10s) {
    auto r = exec(request, deadline);
    REQUIRE_MESSAGE(!r.ok(), "the exec succeeded, stdout: " << r.value().stdout_data);
    CHECK(r.error().variant() == rt::Variant::kGuestAgent);
    return r.error().message();
  }
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A message is safe to pass on: short enough for a JobError (4 KiB), nothing but printable ASCII.
void check_quotable(const std::string& message) {
  CHECK(message.size() < 2048);
  const auto bad = std::find_if(message.begin(), message.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f;
  });
  CHECK_MESSAGE(bad == message.end(), "a byte " << int(static_cast<unsigned char>(*bad)) << " at "
                                                << (bad - message.begin()));
}

// The client gave up on the channel for good: later calls fail at once.
void check_broken(rt::AgentClient& client) {
  CHECK_FALSE(client.healthy());
  const auto t0 = Clock::now();
  auto r = client.exec(job({"true"}), std::stop_token{}, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail().rfind("agent channel unusable: ", 0) == 0);
  CHECK(Clock::now() - t0 < 100ms);
}

// The host side is still fine: a fresh client to an honest agent runs the next job.
void check_next_job_runs() {
  Session s(honest_agent);
  REQUIRE(s.client.ping(5s));
  CHECK(s.client.agent_version() == "fake-1");
  auto r = s.exec(job({"echo", "next", "job"}, 1u << 20, {"out.txt"}));
  REQUIRE(r.ok());
  CHECK(r.value().stdout_data == "next job\n");
  REQUIRE(r.value().files.size() == 1);
  CHECK(r.value().files[0].data == "data of out.txt");
  CHECK(s.client.healthy());
}

}  // namespace

TEST_CASE("hostile agent: a 4 GiB length prefix is refused at once and breaks the channel") {
  {
    Session s(send_then_silence(std::string("\xff\xff\xff\xff", 4) + std::string(1u << 20, 'x')));
    const auto m = s.exec_error(job({"true"}));
    CHECK(m == "guest agent error: agent reply: frame: length 4294967295 exceeds 33554432");
    CHECK(s.took < 2s);
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a length prefix one over the frame limit is refused at once") {
  {
    Session s(send_then_silence(std::string("\x02\x00\x00\x01", 4) + std::string(1000, 'x')));
    const auto m = s.exec_error(job({"true"}));
    CHECK(m == "guest agent error: agent reply: frame: length 33554433 exceeds 33554432");
    CHECK(s.took < 2s);
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a truncated frame then silence ends at the deadline") {
  {
    Session s(send_then_silence(std::string("\x00\x00\x01\x00", 4) + "0123456789"));
    const auto m = s.exec_error(job({"true"}), 300ms);
    CHECK(m == "guest agent error: exec: no reply from the guest agent within 300 ms");
    CHECK(s.took >= 300ms);
    CHECK(s.took < 2300ms);  // generous: CI machines are busy
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a truncated frame then end of stream is an error at once") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request&) {
      a.send_raw(std::string("\x00\x00\x01\x00", 4) + "0123456789");
      a.hang_up();
    }));
    const auto m = s.exec_error(job({"true"}));
    CHECK(m ==
          "guest agent error: read agent channel: the guest closed it in the middle of a reply");
    CHECK(s.took < 2s);
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: malformed msgpack is an error naming the body") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request&) {
      a.send_body("\xc1 never used in msgpack");
      a.stay_silent();
    }));
    const auto m = s.exec_error(job({"true"}));
    CHECK_MESSAGE(m.rfind("guest agent error: agent reply: body: ", 0) == 0, m);
    CHECK(s.took < 2s);
    check_quotable(m);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a result with fields of the wrong type is an error naming the field") {
  struct Case {
    std::function<void(Packer&)> field;
    std::string error;
  };
  const std::vector<Case> cases = {
      {[](Packer& pk) { kv(pk, "exit_code", std::string("zero")); },
       "exit_code: expected integer, got string"},
      {[](Packer& pk) { kv(pk, "files", std::string("out.txt")); },
       "files: expected array, got string"},
      {[](Packer& pk) { kv(pk, "stdout", 42); }, "stdout: expected bytes, got integer"},
      {[](Packer& pk) { kv(pk, "timed_out", 1); }, "timed_out: expected bool, got integer"},
      {[](Packer& pk) { kv(pk, "signal", uint64_t{1} << 40); }, "signal: out of the 32-bit range"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.error);
    Session s(on_exec([&c](FakeAgent& a, const agent::Request& r) {
      a.send_body(body(
          3,
          [&](Packer& pk) {
            kv(pk, "ok", true);
            kv(pk, "op", std::string("result"));
            c.field(pk);
          },
          r.id));
    }));
    CHECK(s.exec_error(job({"true"})) == "guest agent error: agent reply: " + c.error);
    CHECK(s.took < 2s);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: strings over the protocol's limits are refused and quoted bounded") {
  {
    // stdout one byte over kMaxOutputCap.
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send_body(body(
          3,
          [&](Packer& pk) {
            kv(pk, "ok", true);
            kv(pk, "op", std::string("result"));
            kv_bin(pk, "stdout", std::string((8u << 20) + 1, 'o'));
          },
          r.id));
    }));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: stdout: longer than 8388608 bytes");
  }
  {
    // A 1 MiB key of escape sequences, given twice: the decoder names it, the client quotes it
    // bounded and escaped.
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      std::string key;
      while (key.size() < (1u << 20) - 8) key += "\x1b[2J\r\n";
      a.send_body(body(
          2,
          [&](Packer& pk) {
            kv(pk, key, 1);
            kv(pk, key, 2);
          },
          r.id));
    }));
    const auto m = s.exec_error(job({"true"}));
    CHECK(m.rfind("guest agent error: agent reply: \\x1b[2J\\x0d\\x0a", 0) == 0);
    CHECK(contains(m, "..."));
    check_quotable(m);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: output past the request's caps comes back capped") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send(result_reply(r.id, std::string(1u << 20, 'o'), std::string(5000, 'e'),
                          {{"out.txt", std::string(8u << 20, 'f'), false}}));
    }));
    auto r = s.exec(job({"true"}, 1024, {"out.txt"}));
    REQUIRE(r.ok());
    CHECK(r.value().stdout_data == std::string(1024, 'o'));
    CHECK(r.value().stdout_truncated);
    CHECK(r.value().stderr_data == std::string(1024, 'e'));
    CHECK(r.value().stderr_truncated);
    REQUIRE(r.value().files.size() == 1);
    CHECK(r.value().files[0].data.size() == 1024);
    CHECK(r.value().files[0].truncated);
    CHECK(s.took < 5s);
    CHECK(s.client.healthy());
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: files out over 8 MiB in all are refused") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send(result_reply(
          r.id, "", "",
          {{"a", std::string(5u << 20, 'a'), false}, {"b", std::string(5u << 20, 'b'), false}}));
    }));
    CHECK(s.exec_error(job({"true"}, 8u << 20, {"a", "b"})) ==
          "guest agent error: agent reply: files: longer than 8388608 bytes in all");
    CHECK(s.took < 5s);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a result that cannot be believed is refused and breaks the channel") {
  struct Case {
    agent::Reply reply;
    std::string error;
  };
  auto with_signal = [](int32_t signal) {
    agent::Reply r = result_reply(0, "");
    r.result.signal = signal;
    return r;
  };
  const std::vector<Case> cases = {
      {result_reply(0, "", "", {{"etc/passwd", "root:x:0:0", false}}),
       "files[0].path: 'etc/passwd' was not asked for"},
      {result_reply(0, "", "", {{"out.txt", "1", false}, {"out.txt", "2", false}}),
       "files[1].path: 'out.txt' comes twice"},
      {with_signal(200), "signal: 200 is not a signal (0..64)"},
      {with_signal(-9), "signal: -9 is not a signal (0..64)"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.error);
    Session s(on_exec([&c](FakeAgent& a, const agent::Request& r) {
      agent::Reply reply = c.reply;
      reply.id = r.id;
      a.send(reply);
    }));
    CHECK(s.exec_error(job({"true"}, 1024, {"out.txt"})) ==
          "guest agent error: exec: the agent's result is not believable: " + c.error);
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: nesting deeper than the decoder's limit is refused") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send_body(body(
          3,
          [&](Packer& pk) {
            kv(pk, "ok", true);
            kv(pk, "op", std::string("result"));
            pk.pack(std::string("stdout"));
            for (int i = 0; i < 10000; ++i) pk.pack_array(1);
            pk.pack(0);
          },
          r.id));
    }));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: body: nesting deeper than 6");
    CHECK(s.took < 2s);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: an endless stream of replies breaks the channel at the first stray one") {
  SUBCASE("pongs to a request never made") {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      agent::Reply pong;
      pong.id = r.id + 1000;
      pong.agent_version = "spam";
      a.send_forever(agent::frame(agent::encode_reply(pong)));
    }));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: id 1001 answers no request in flight (waiting for 1)");
    CHECK(s.took < 2s);
    check_broken(s.client);
  }
  SUBCASE("results to the request in flight, again and again") {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send_forever(agent::frame(agent::encode_reply(result_reply(r.id, "again\n"))));
    }));
    auto r = s.exec(job({"true"}));
    REQUIRE(r.ok());
    CHECK(r.value().stdout_data == "again\n");
    // The second result answers nothing: the next request finds it and gives up on the channel.
    CHECK_FALSE(s.client.ping(2s));
    CHECK_FALSE(s.client.healthy());
    CHECK(s.client.broken_reason() ==
          "agent reply: id 1 answers no request in flight (waiting for 2)");
  }
  SUBCASE("empty frames") {
    Session s(
        on_exec([](FakeAgent& a, const agent::Request&) { a.send_forever(std::string(4, '\0')); }));
    CHECK(s.exec_error(job({"true"})) == "guest agent error: agent reply: frame: empty (length 0)");
    CHECK(s.took < 2s);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: bytes trickled forever end at the deadline") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request&) {
      a.send_raw(std::string("\x00\x10\x00\x00", 4));
      a.send_forever("x", 5ms);
    }));
    const auto m = s.exec_error(job({"true"}), 400ms);
    CHECK(m == "guest agent error: exec: no reply from the guest agent within 400 ms");
    CHECK(s.took < 2400ms);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a second reply to a request answered already breaks the channel") {
  {
    Session s([](FakeAgent& a, const agent::Request& r) {
      honest_agent(a, r);
      if (r.op == agent::Op::kPing) honest_agent(a, r);  // the pong again
    });
    REQUIRE(s.client.ping(2s));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: id 1 answers no request in flight (waiting for 2)");
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a reply to a request never made breaks the channel") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      a.send(result_reply(r.id + 7, "not yours\n"));
      a.stay_silent();
    }));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: id 8 answers no request in flight (waiting for 1)");
    CHECK(s.took < 2s);
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a result with id 0 is refused") {
  {
    Session s(
        on_exec([](FakeAgent& a, const agent::Request&) { a.send(result_reply(0, "zero\n")); }));
    CHECK(s.exec_error(job({"true"})) ==
          "guest agent error: agent reply: a result with id 0 (only an error may have it)");
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: the guest's error text is quoted bounded and escaped") {
  {
    Session s(on_exec([](FakeAgent& a, const agent::Request& r) {
      std::string text;
      while (text.size() < agent::limits::kMaxError - 8) text += "\x1b]0;pwned\x07\n";
      a.send(error_reply(r.id, text));
    }));
    const auto m = s.exec_error(job({"true"}));
    CHECK(m.rfind("guest agent error: exec: the agent could not run the request: "
                  "\\x1b]0;pwned\\x07\\x0a",
                  0) == 0);
    check_quotable(m);
    CHECK(s.client.healthy());  // an error answer is within the protocol
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a refresh that reports another hostname than it applied is refused") {
  {
    Session s([](FakeAgent& a, const agent::Request& r) {
      agent::Reply reply;
      reply.id = r.id;
      reply.kind = agent::ReplyKind::kRefreshed;
      reply.refreshed = {"0a1b2c3d-0000-4000-8000-0123456789ab", "template-0", true};
      a.send(reply);
    });
    auto r = s.client.refresh(std::string(64, 'e'), 1700000000000000000, "clone-7", 2s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message() ==
          "guest agent error: refresh: the agent says it applied hostname 'clone-7' but reports "
          "'template-0'");
    check_broken(s.client);
  }
  check_next_job_runs();
}

TEST_CASE("hostile agent: a late reply to a request given up on is still skipped") {
  // Not hostile: the tracking of ids must keep the legitimate case working.
  Session s([](FakeAgent& a, const agent::Request& r) {
    if (r.op == agent::Op::kPing && r.id == 1) std::this_thread::sleep_for(300ms);
    honest_agent(a, r);
  });
  CHECK_FALSE(s.client.ping(50ms));
  CHECK(s.client.healthy());
  auto r = s.exec(job({"echo", "after", "the", "late", "pong"}));
  REQUIRE(r.ok());
  CHECK(r.value().stdout_data == "after the late pong\n");
  CHECK(s.client.healthy());
}
