#include "paddock/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace paddock::metrics {
namespace {

bool valid_name(std::string_view n, bool colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::string& labels, std::string_view extra, const std::string& value) {
  out.append(name).append(suffix);
  if (!labels.empty() || !extra.empty()) {
    out.push_back('{');
    out.append(labels);
    if (!labels.empty() && !extra.empty()) out.push_back(',');
    out.append(extra);
    out.push_back('}');
  }
  out.push_back(' ');
  out.append(value);
  out.push_back('\n');
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw std::invalid_argument("histogram bounds must be finite and strictly ascending");
    }
  }
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::observe(double value) {
  // The first bound >= value (buckets are inclusive); past the last one, the +Inf bucket.
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                       bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};
}

std::vector<double> vm_start_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "NaN";  // cannot happen: 64 bytes hold any double
  return std::string(buf, end);
}

FamilyBase::FamilyBase(std::string name, std::string help, Type type,
                       std::vector<std::string> labels)
    : name_(std::move(name)), help_(std::move(help)), type_(type), labels_(std::move(labels)) {
  if (!valid_name(name_, true)) throw std::invalid_argument("bad metric name '" + name_ + "'");
  for (const auto& l : labels_) {
    if (!valid_name(l, false) || l.rfind("__", 0) == 0 ||
        (type_ == Type::kHistogram && l == "le")) {
      throw std::invalid_argument("metric " + name_ + ": bad label name '" + l + "'");
    }
    if (std::count(labels_.begin(), labels_.end(), l) > 1) {
      throw std::invalid_argument("metric " + name_ + ": label '" + l + "' twice");
    }
  }
}

void FamilyBase::check_values(const Values& values) const {
  if (values.size() != labels_.size()) {
    throw std::invalid_argument("metric " + name_ + ": " + std::to_string(labels_.size()) +
                                " label value(s) expected, got " + std::to_string(values.size()));
  }
}

std::string FamilyBase::label_pairs(const Values& values) const {
  std::string out;
  for (size_t i = 0; i < labels_.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(labels_[i]).append("=\"").append(escape_label_value(values[i])).push_back('"');
  }
  return out;
}

void FamilyBase::render(std::string& out) const {
  out.append("# HELP ").append(name_).push_back(' ');
  out.append(escape_help(help_)).push_back('\n');
  out.append("# TYPE ").append(name_).push_back(' ');
  out.append(type_name(type_)).push_back('\n');
  render_samples(out);
}

namespace detail {

void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Counter& c) {
  append_sample(out, name, "", labels, "", std::to_string(c.value()));
}

void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Gauge& g) {
  append_sample(out, name, "", labels, "", format_value(g.value()));
}

void render_sample(std::string& out, const std::string& name, const std::string& labels,
                   const Histogram& h) {
  const auto s = h.snapshot();
  const auto& bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    const std::string le =
        "le=\"" + (i < bounds.size() ? format_value(bounds[i]) : std::string("+Inf")) + "\"";
    append_sample(out, name, "_bucket", labels, le, std::to_string(s.cumulative[i]));
  }
  append_sample(out, name, "_sum", labels, "", format_value(s.sum));
  append_sample(out, name, "_count", labels, "", std::to_string(s.count));
}

}  // namespace detail

template <class Metric>
Family<Metric>& Registry::add(std::string name, std::string help, Type type,
                              std::vector<std::string> labels, std::vector<double> bounds) {
  auto family = std::make_unique<Family<Metric>>(std::move(name), std::move(help), type,
                                                 std::move(labels), std::move(bounds));
  std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    if (f->name() == family->name()) {
      throw std::invalid_argument("metric " + family->name() + " registered twice");
    }
  }
  auto& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

Counter& Registry::counter(std::string name, std::string help) {
  return counter_family(std::move(name), std::move(help), {}).with(std::vector<std::string>{});
}

Gauge& Registry::gauge(std::string name, std::string help) {
  return gauge_family(std::move(name), std::move(help), {}).with(std::vector<std::string>{});
}

Histogram& Registry::histogram(std::string name, std::string help, std::vector<double> bounds) {
  return histogram_family(std::move(name), std::move(help), {}, std::move(bounds))
      .with(std::vector<std::string>{});
}

Family<Counter>& Registry::counter_family(std::string name, std::string help,
                                          std::vector<std::string> labels) {
  return add<Counter>(std::move(name), std::move(help), Type::kCounter, std::move(labels));
}

Family<Gauge>& Registry::gauge_family(std::string name, std::string help,
                                      std::vector<std::string> labels) {
  return add<Gauge>(std::move(name), std::move(help), Type::kGauge, std::move(labels));
}

Family<Histogram>& Registry::histogram_family(std::string name, std::string help,
                                              std::vector<std::string> labels,
                                              std::vector<double> bounds) {
  Histogram check(bounds);  // bad bounds throw here, not at a child's first use
  return add<Histogram>(std::move(name), std::move(help), Type::kHistogram, std::move(labels),
                        std::move(bounds));
}

void Registry::on_collect(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);  // one render at a time: hooks set gauges the render then reads
  for (const auto& hook : hooks_) hook();
  std::string out;
  for (const auto& f : families_) f->render(out);
  return out;
}

}  // namespace paddock::metrics
