// paddock::load::Histogram (tools/load/histogram.h): percentiles against an exact reference,
// within the stated relative error, and the edges.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "load/histogram.h"

using paddock::load::Histogram;

namespace {

constexpr double kQuantiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

// Nearest rank, on the sorted samples: the reference the histogram approximates.
uint64_t exact(std::vector<uint64_t> sorted, double q) {
  if (q <= 0) return sorted.front();
  const auto rank =
      static_cast<size_t>(std::ceil(q / 100.0 * static_cast<double>(sorted.size()) - 1e-9));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

void check_against_exact(const Histogram& h, std::vector<uint64_t> samples) {
  std::sort(samples.begin(), samples.end());
  for (double q : kQuantiles) {
    const uint64_t want = exact(samples, q);
    const uint64_t got = h.percentile(q);
    CAPTURE(q);
    CAPTURE(want);
    CAPTURE(got);
    CHECK(got >= want);  // the top of the exact value's bucket, never below it
    CHECK(static_cast<double>(got - want) <= h.relative_error() * static_cast<double>(want));
  }
  CHECK(h.min() == samples.front());
  CHECK(h.max() == samples.back());
  double sum = 0;
  for (auto v : samples) sum += static_cast<double>(v);
  CHECK(h.mean() == doctest::Approx(sum / static_cast<double>(samples.size())));
}

}  // namespace

TEST_CASE("histogram: uniform samples over six decades, percentiles within 0.1 percent") {
  Histogram h;
  CHECK(h.relative_error() < 0.001);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint64_t> dist(1, 5'000'000);
  std::vector<uint64_t> samples;
  for (int i = 0; i < 200'000; ++i) samples.push_back(dist(rng));
  for (auto v : samples) h.record(v);
  CHECK(h.count() == samples.size());
  check_against_exact(h, samples);
}

TEST_CASE("histogram: bimodal samples (fast path and slow tail) keep both modes") {
  Histogram h;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> fast(800, 50);          // ~0.8 ms
  std::normal_distribution<double> slow(250'000, 20'000);  // ~250 ms
  std::bernoulli_distribution tail(0.05);
  std::vector<uint64_t> samples;
  for (int i = 0; i < 100'000; ++i) {
    const double v = tail(rng) ? slow(rng) : fast(rng);
    samples.push_back(static_cast<uint64_t>(std::max(1.0, v)));
  }
  for (auto v : samples) h.record(v);
  check_against_exact(h, samples);
  CHECK(h.percentile(90) < 2'000);
  CHECK(h.percentile(99) > 100'000);
}

TEST_CASE("histogram: two significant digits, within 1 percent, and much smaller") {
  Histogram coarse(Histogram::kOneHourUs, 2);
  Histogram fine;
  CHECK(coarse.relative_error() < 0.01);
  CHECK(coarse.memory_bytes() < fine.memory_bytes());
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> dist(8, 2);
  std::vector<uint64_t> samples;
  for (int i = 0; i < 50'000; ++i)
    samples.push_back(1 + static_cast<uint64_t>(std::min(dist(rng), 1e9)));
  for (auto v : samples) coarse.record(v);
  check_against_exact(coarse, samples);
}

TEST_CASE("histogram: small values are exact") {
  Histogram h;
  for (uint64_t v = 0; v < 2000; ++v) h.record(v);
  CHECK(h.percentile(50) == 999);
  CHECK(h.percentile(0.05) == 0);
  CHECK(h.percentile(100) == 1999);
}

TEST_CASE("histogram: empty reports zeros") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.min() == 0);
  CHECK(h.max() == 0);
  CHECK(h.mean() == 0);
  CHECK(h.percentile(0) == 0);
  CHECK(h.percentile(50) == 0);
  CHECK(h.percentile(100) == 0);
}

TEST_CASE("histogram: a single value is every percentile, exactly") {
  Histogram h;
  h.record(123'457);
  for (double q : kQuantiles) CHECK(h.percentile(q) == 123'457);
  CHECK(h.mean() == 123'457);
}

TEST_CASE("histogram: q=0 and q=100 are the exact min and max") {
  Histogram h;
  for (uint64_t v : {1'234'567ULL, 3'000'001ULL, 2'999'999ULL, 7'777'777ULL}) h.record(v);
  CHECK(h.percentile(0) == 1'234'567);
  CHECK(h.percentile(100) == 7'777'777);
  CHECK(h.percentile(-5) == 1'234'567);
  CHECK(h.percentile(250) == 7'777'777);
}

TEST_CASE("histogram: values above the range are clamped to it and still counted") {
  Histogram h(1'000'000);
  h.record(10);
  h.record(5'000'000);
  h.record(UINT64_MAX);
  CHECK(h.count() == 3);
  CHECK(h.clamped() == 2);
  CHECK(h.max() == 1'000'000);
  CHECK(h.percentile(99) == 1'000'000);
  CHECK(h.percentile(10) == 10);
}

TEST_CASE("histogram: memory does not grow with the number of samples") {
  Histogram h;
  const size_t before = h.memory_bytes();
  CHECK(before < 256 * 1024);
  for (uint64_t i = 0; i < 1'000'000; ++i) h.record((i * 2'654'435'761ULL) % Histogram::kOneHourUs);
  CHECK(h.memory_bytes() == before);
  CHECK(h.count() == 1'000'000);
}

TEST_CASE("histogram: merge equals recording everything into one") {
  Histogram a, b, all;
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<uint64_t> dist(1, 10'000'000);
  for (int i = 0; i < 20'000; ++i) {
    const uint64_t v = dist(rng);
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  Histogram empty;
  a.merge(empty);
  a.merge(b);
  CHECK(a.count() == all.count());
  CHECK(a.min() == all.min());
  CHECK(a.max() == all.max());
  CHECK(a.mean() == doctest::Approx(all.mean()));
  for (double q : kQuantiles) CHECK(a.percentile(q) == all.percentile(q));
  empty.merge(all);
  CHECK(empty.percentile(50) == all.percentile(50));
  CHECK(empty.min() == all.min());

  Histogram other_range(1'000);
  CHECK_THROWS_AS(a.merge(other_range), std::invalid_argument);
}
