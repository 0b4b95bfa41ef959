// Paddock's one result convention: a function that can fail at run time returns Expected<T, E>,
// a T or an E, and does not throw. (C++23's std::expected, which g++ 12 does not offer in C++20;
// the subset Paddock uses.) The error type names the domain:
//
//   base::Expected<T>            = Expected<T, base::Failure>: a message for an operator (broker,
//                                  stores, tools, config files, servers)
//   runtime::Result<T>           = Expected<T, runtime::Error>: a wire variant and a cause
//   schemas::Decoded<T>          = Expected<T, schemas::DecodeError>: the offending field
//   daemon::Parsed<C>            = Expected<C, daemon::ConfigError>: an exit code and a message
//
// Exceptions remain for programming errors (std::logic_error and kin) and at the edges where a
// library throws by contract (cppzmq's zmq::error_t, CLI11, nlohmann::json); code that calls
// such a library turns what it throws into an Expected at the call.
//
// Thread-safety: a value type; no shared state.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace paddock::base {

// The error of base::Expected<T>: what failed, in words an operator can act on ("journal
// /var/lib/x.db: database disk image is malformed").
struct Failure {
  std::string message;
};

inline Failure fail(std::string message) { return Failure{std::move(message)}; }

template <class T, class E = Failure>
class [[nodiscard]] Expected {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, E>, "a value type must differ from its error");

 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Expected(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit
  // From a value convertible to T (a std::unique_ptr<Derived> for a std::unique_ptr<Base>).
  template <class U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
           !std::is_same_v<std::remove_cvref_t<U>, E> && !std::is_convertible_v<U&&, E>)
      Expected(U&& value)
      : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // REQUIRES: !ok().
  E& error() & { return std::get<1>(v_); }
  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, E> v_;
};

// Success without a value, or an E.
template <class E>
class [[nodiscard]] Expected<void, E> {
 public:
  Expected() = default;
  Expected(E error) : e_(std::move(error)) {}  // NOLINT: implicit
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  // REQUIRES: !ok().
  E& error() & { return *e_; }
  const E& error() const& { return *e_; }
  E&& error() && { return std::move(*e_); }

 private:
  std::optional<E> e_;
};

using Status = Expected<void>;

}  // namespace paddock::base
