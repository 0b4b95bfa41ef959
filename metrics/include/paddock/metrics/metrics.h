// Metrics in the Prometheus text exposition format (version 0.0.4): counters, gauges and
// histograms, each in a family of one name, one help text and fixed label names; a Registry owns
// the families and renders them.
//
// Hot paths hold a reference to a child (a Counter&, a Histogram&) looked up once: updating it is
// a few relaxed atomic operations, with no lock and no allocation. Looking a child up by label
// values (Family::with) takes the family's mutex and may allocate: do it once per label set, not
// per event. Label values must come from a small bounded set (an error code's variant, a warm or
// cold start); the caller bounds them.
//
// Thread-safety: every method may be called from any thread. A render sees each value as it was
// at some moment during the render; a histogram's _count is the sum of its buckets as read.
// Children live as long as their Registry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace paddock::metrics {

// A monotonically increasing count.
class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in buckets with fixed upper bounds (inclusive, ascending, finite; +Inf is
// implied), plus their sum. Durations are observed in seconds.
class Histogram {
 public:
  // REQUIRES: `bounds` strictly ascending and finite.
  explicit Histogram(std::vector<double> bounds);

  void observe(double value);
  template <class Rep, class Period>
  void observe(std::chrono::duration<Rep, Period> d) {
    observe(std::chrono::duration<double>(d).count());
  }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0};
};

// Bucket bounds in seconds: 0.5 ms .. 5 min (queue waits, job latencies).
std::vector<double> latency_buckets();
// Bucket bounds in seconds: 5 ms .. 2 min (VM starts: a warm restore is tens of ms, a cold boot
// under TCG seconds).
std::vector<double> vm_start_buckets();

enum class Type { kCounter, kGauge, kHistogram };

// One metric name: its help, type and label names. Its children (one per set of label values)
// are kept by Family<Metric>.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labels);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  // Appends this family's HELP and TYPE lines and its samples to `out`.
  void render(std::string& out) const;

 protected:
  using Values = std::vector<std::string>;
  // Throws std::invalid_argument unless there is one value per label name.
  void check_values(const Values& values) const;
  // `a="x",b="y"`: the label pairs of a child, escaped, without braces.
  std::string label_pairs(const Values& values) const;
  virtual void render_samples(std::string& out) const = 0;

 private:
  const std::string name_;
  const std::string help_;
  const Type type_;
  const std::vector<std::string> labels_;
};

namespace detail {
// One child's sample lines; `labels` as label_pairs() makes them ("" for none).
void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Counter& c);
void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Gauge& g);
void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Histogram& h);
}  // namespace detail

template <class Metric>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
        bounds_(std::move(bounds)) {}

  // The child for these label values, in the order of the family's label names; made on first
  // use. Throws std::invalid_argument if the count of values differs from the labels'.
  Metric& with(std::initializer_list<std::string_view> values) {
    return with(Values(values.begin(), values.end()));
  }
  Metric& with(Values values) {
    check_values(values);
    std::lock_guard lock(mu_);
    auto it = children_.find(values);
    if (it == children_.end()) {
      std::unique_ptr<Metric> child;
      if constexpr (std::is_same_v<Metric, Histogram>) {
        child = std::make_unique<Histogram>(bounds_);
      } else {
        child = std::make_unique<Metric>();
      }
      it = children_.emplace(std::move(values), std::move(child)).first;
    }
    return *it->second;
  }

 private:
  void render_samples(std::string& out) const override {
    std::lock_guard lock(mu_);
    for (const auto& [values, child] : children_) {
      detail::render_sample(out, name(), label_pairs(values), *child);
    }
  }

  const std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<Values, std::unique_ptr<Metric>> children_;  // ordered: a stable rendering
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Names follow Prometheus: [a-zA-Z_:][a-zA-Z0-9_:]* for metrics, [a-zA-Z_][a-zA-Z0-9_]* for
  // labels (not "le", not starting "__"). A bad or repeated name throws std::invalid_argument: it
  // is a programming error, found by the first test that builds the registry.
  Counter& counter(std::string name, std::string help);
  Gauge& gauge(std::string name, std::string help);
  Histogram& histogram(std::string name, std::string help, std::vector<double> bounds);
  Family<Counter>& counter_family(std::string name, std::string help,
                                  std::vector<std::string> labels);
  Family<Gauge>& gauge_family(std::string name, std::string help, std::vector<std::string> labels);
  Family<Histogram>& histogram_family(std::string name, std::string help,
                                      std::vector<std::string> labels, std::vector<double> bounds);

  // Runs before every render, on the rendering thread: sets gauges from state that is read, not
  // pushed (a pool's size). Hooks must be quick and must not call render().
  void on_collect(std::function<void()> hook);

  // Every family in registration order, in the text format 0.0.4.
  std::string render() const;

 private:
  template <class Metric>
  Family<Metric>& add(std::string name, std::string help, Type type,
                      std::vector<std::string> labels, std::vector<double> bounds = {});

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::vector<std::function<void()>> hooks_;
};

// The content type of render()'s output.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Text-format helpers (exposed for tests): a label value with \\, \" and \n escaped; a HELP text
// with \\ and \n escaped; a sample value ("+Inf", "-Inf", "NaN", else the shortest round-trip
// decimal).
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
std::string format_value(double v);

}  // namespace paddock::metrics
