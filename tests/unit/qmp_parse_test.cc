// The decoding half of the QMP client (runtime/src/qemu/qmp_client.h) on what a hostile QEMU could
// send: lines past 1 MiB, deep nesting, numbers out of range, wrong types, escape sequences.
#include <doctest/doctest.h>

#include <string>

#include "qemu/qmp_client.h"

namespace qemu = paddock::runtime::qemu;
using qemu::QmpMessage;

namespace {

std::string refusal(const std::string& line) {
  std::string error;
  auto m = qemu::parse_qmp_message(line, error);
  CHECK_FALSE(m.has_value());
  return error;
}

}  // namespace

TEST_CASE("qmp: greeting, return, error and event lines decode with their ids") {
  std::string error;
  auto g = qemu::parse_qmp_message(R"({"QMP": {"version": {}, "capabilities": []}})", error);
  REQUIRE(g);
  CHECK(g->kind == QmpMessage::Kind::kGreeting);
  auto r = qemu::parse_qmp_message(R"({"return": {"status": "running"}, "id": 7})", error);
  REQUIRE(r);
  CHECK(r->kind == QmpMessage::Kind::kReturn);
  CHECK(r->id == 7u);
  CHECK(qemu::qmp_string(r->value, "status", "?") == "running");
  auto e = qemu::parse_qmp_message(R"({"error": {"class": "GenericError", "desc": "no"}, "id": 8})",
                                   error);
  REQUIRE(e);
  CHECK(e->kind == QmpMessage::Kind::kError);
  CHECK(e->error == "no");
  auto ev = qemu::parse_qmp_message(R"({"event": "STOP", "timestamp": {}})", error);
  REQUIRE(ev);
  CHECK(ev->kind == QmpMessage::Kind::kEvent);
  CHECK_FALSE(ev->id.has_value());
}

TEST_CASE("qmp: what QEMU says is quoted bounded and escaped and read without throwing") {
  std::string error;
  const std::string desc = std::string("\\u001b[2J") + std::string(5000, 'd');
  auto e = qemu::parse_qmp_message(R"({"error": {"desc": ")" + desc + R"("}, "id": 1})", error);
  REQUIRE(e);
  CHECK(e->error.rfind("\\x1b[2J", 0) == 0);
  CHECK(e->error.size() == qemu::qmp_limits::kMaxText + 3);
  // Members of the wrong type, or a return value that is not an object, fall back.
  auto r = qemu::parse_qmp_message(R"({"return": {"status": 5}, "id": 2})", error);
  REQUIRE(r);
  CHECK(qemu::qmp_string(r->value, "status", "unknown") == "unknown");
  auto a = qemu::parse_qmp_message(R"({"return": ["status"], "id": 3})", error);
  REQUIRE(a);
  CHECK(qemu::qmp_string(a->value, "status", "unknown") == "unknown");
  auto f = qemu::parse_qmp_message(R"({"error": "flat", "id": 4})", error);
  REQUIRE(f);
  CHECK(f->error == "qmp error");
  // Found by fuzz_qmp_replies in CI: an empty desc left the error without a reason.
  auto empty =
      qemu::parse_qmp_message(R"({"error": {"class": "GenericError", "desc": ""}})", error);
  REQUIRE(empty);
  CHECK(empty->kind == qemu::QmpMessage::Kind::kError);
  CHECK(empty->error == "qmp error (empty desc)");
  // An id that is not an unsigned integer answers nothing.
  auto s = qemu::parse_qmp_message(R"({"return": {}, "id": "4"})", error);
  REQUIRE(s);
  CHECK_FALSE(s->id.has_value());
}

TEST_CASE("qmp: malformed lines deep nesting big numbers and non-objects are refused") {
  CHECK(refusal("{\"return\": {}").rfind("malformed qmp message: ", 0) == 0);
  CHECK(refusal("[1, 2]") == "qmp message is not an object but array");
  CHECK(refusal(std::string(33, '[') + std::string(33, ']')) ==
        "qmp message nested deeper than 32");
  CHECK(refusal(std::string(1000000, '{')) == "qmp message nested deeper than 32");
  // Brackets inside strings do not count.
  std::string error;
  CHECK(qemu::parse_qmp_message(R"({"return": {"x": ")" + std::string(100, '[') + R"("}})", error));
  CHECK(refusal(R"({"return": {"n": 1e999}, "id": 1})").rfind("malformed qmp message", 0) == 0);
  CHECK(refusal(std::string(qemu::qmp_limits::kMaxLine + 1, ' ')) ==
        "qmp message larger than 1048576 bytes");
}

TEST_CASE("qmp: the line buffer splits lines and gives up past 1 MiB without a line end") {
  qemu::QmpLineBuffer lines;
  lines.feed("{\"a\": 1}\r\n{\"b\"");
  CHECK(lines.next_line() == "{\"a\": 1}\r");
  CHECK_FALSE(lines.next_line().has_value());
  lines.feed(": 2}\n");
  CHECK(lines.next_line() == "{\"b\": 2}");
  const std::string chunk(4096, 'x');
  for (size_t fed = 0; fed <= qemu::qmp_limits::kMaxLine; fed += chunk.size()) {
    CHECK_FALSE(lines.overflowed());
    lines.feed(chunk);
    CHECK_FALSE(lines.next_line().has_value());
  }
  CHECK(lines.overflowed());
}
