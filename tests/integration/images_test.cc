// Per-job images through a broker and memory workers (the test double advertises the images of
// --memory-images): a job runs only on a worker that has its image, a job whose image no worker
// has is answered UnknownImage, and jobs of an image no free worker has do not hold up the rest.
#include <doctest/doctest.h>

#include "harness.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

schemas::JobRequest image_job(std::string id, std::string image, std::vector<std::string> argv) {
  auto j = job(std::move(id), std::move(argv));
  j.image = std::move(image);
  return j;
}

// Runs one default job to its end: afterwards the worker is surely registered with the broker.
void wait_registered(client::Client& c, const std::string& id, const std::string& image) {
  c.submit(image_job(id, image, {"true"}));
  auto answers = collect(c, {id}, 20s, 0ms);
  REQUIRE(answers.finals.count(id) == 1);
  REQUIRE(answers.finals.at(id).front().kind == client::Event::Kind::kResult);
}

}  // namespace

TEST_CASE("images: a job for an image no connected worker has is answered UnknownImage at once") {
  TempDir dir;
  auto broker = start_broker(dir, {"--image-grace-ms", "0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);
  wait_registered(c, "first", "default");
  c.submit(std::vector<schemas::JobRequest>{image_job("py-1", "python", {"echo", "never"}),
                                            job("d-1", {"echo", "ok"})});
  auto answers = collect(c, {"py-1", "d-1"}, 10s);
  REQUIRE(answers.all_exactly_once({"py-1", "d-1"}));
  const auto& ev = answers.finals.at("py-1").front();
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.code == 106);
  CHECK(ev.error.variant == "UnknownImage");
  CHECK_FALSE(ev.error.retryable);
  CHECK(ev.error.message ==
        "no connected worker has image 'python' (the 1 connected worker(s) have: default)");
  CHECK(answers.finals.at("d-1").front().result.stdout_data == "ok\n");
}

TEST_CASE("images: within the grace a job waits for a worker with its image, then runs there") {
  TempDir dir;
  auto broker = start_broker(dir, {"--image-grace-ms", "600000"});
  auto wd = start_worker(dir, broker.worker_endpoint, "wd", 1);
  client::Client c(broker.client_endpoint);
  wait_registered(c, "first", "default");
  c.submit(image_job("py-1", "python", {"echo", "py"}));  // no python worker yet: it waits
  auto wp = start_worker(dir, broker.worker_endpoint, "wp", 1, {"--memory-images", "python"});
  auto answers = collect(c, {"py-1"}, 20s);
  REQUIRE(answers.all_exactly_once({"py-1"}));
  const auto& ev = answers.finals.at("py-1").front();
  REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
  CHECK(ev.result.worker_id == "wp");
  CHECK(ev.result.stdout_data == "py\n");
}

TEST_CASE("images: with a short grace a job for a missing image ends UnknownImage, not a timeout") {
  TempDir dir;
  auto broker = start_broker(dir, {"--image-grace-ms", "200"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  client::Client c(broker.client_endpoint);
  c.submit(image_job("gone-1", "no-such-image", {"true"}));
  auto answers = collect(c, {"gone-1"}, 20s);
  REQUIRE(answers.all_exactly_once({"gone-1"}));
  const auto& ev = answers.finals.at("gone-1").front();
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.variant == "UnknownImage");
  CHECK(ev.error.message.find("'no-such-image'") != std::string::npos);
}

TEST_CASE("images: two workers with different images each get only the jobs of their images") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto wd = start_worker(dir, broker.worker_endpoint, "wd", 2, {"--memory-images", "default"});
  auto wp = start_worker(dir, broker.worker_endpoint, "wp", 2, {"--memory-images", "python,tiny"});
  client::Client c(broker.client_endpoint);
  wait_registered(c, "first-d", "default");
  wait_registered(c, "first-p", "python");
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  const char* images[] = {"default", "python", "tiny"};
  for (int i = 0; i < 60; ++i) {
    const std::string image = images[i % 3];
    jobs.push_back(image_job(image + "-" + std::to_string(i), image, {"echo", image}));
    ids.push_back(jobs.back().job_id);
  }
  c.submit(jobs);
  auto answers = collect(c, ids, 30s);
  REQUIRE(answers.all_exactly_once(ids));
  for (const auto& j : jobs) {
    const auto& ev = answers.finals.at(j.job_id).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.worker_id == (j.image == "default" ? "wd" : "wp"));
    CHECK(ev.result.stdout_data == j.image + "\n");
  }
}

TEST_CASE("images: python jobs waiting for the busy python worker do not hold up default jobs") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto wp = start_worker(dir, broker.worker_endpoint, "wp", 1, {"--memory-images", "python"});
  auto wd = start_worker(dir, broker.worker_endpoint, "wd", 2);
  client::Client c(broker.client_endpoint);
  wait_registered(c, "first-d", "default");
  wait_registered(c, "first-p", "python");
  // The python worker's one slot is taken until the blocker is cancelled.
  auto blocker = image_job("py-blocker", "python", {"sleep", "600000"});
  blocker.timeout_ms = 600'000;
  blocker.priority = 10;
  c.submit(blocker);
  // Python jobs ahead of every default job (higher priority, older) that cannot start.
  std::vector<schemas::JobRequest> python, defaults;
  std::vector<std::string> python_ids, default_ids;
  for (int i = 0; i < 20; ++i) {
    python.push_back(image_job("py-" + std::to_string(i), "python", {"echo", "py"}));
    python.back().priority = 10;
    python_ids.push_back(python.back().job_id);
  }
  for (int i = 0; i < 50; ++i) {
    defaults.push_back(job("d-" + std::to_string(i), {"echo", "d"}));
    default_ids.push_back(defaults.back().job_id);
  }
  c.submit(python);
  c.submit(defaults);
  // Every default job ends while the blocker still holds the python slot.
  auto first = collect(c, default_ids, 30s, 0ms);
  CHECK(first.finals.count("py-blocker") == 0);
  for (const auto& id : python_ids) CHECK(first.finals.count(id) == 0);
  REQUIRE(first.answered() == default_ids.size());
  for (const auto& id : default_ids) {
    const auto& ev = first.finals.at(id).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.worker_id == "wd");
  }
  // Then the python jobs run, on the python worker.
  c.cancel("py-blocker");
  python_ids.push_back("py-blocker");
  auto rest = collect(c, python_ids, 30s);
  REQUIRE(rest.all_exactly_once(python_ids));
  CHECK(rest.finals.at("py-blocker").front().error.variant == "Cancelled");
  for (int i = 0; i < 20; ++i) {
    const auto& ev = rest.finals.at("py-" + std::to_string(i)).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.worker_id == "wp");
  }
}

TEST_CASE(
    "images: a worker refuses --warm-images of an image it does not have, naming its images") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1,
                             {"--memory-images", "default,python", "--warm-images", "ruby"});
  auto code = worker->wait_for(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 2);
  const std::string log = slurp(worker->log() + ".err");
  CHECK(log.find("no image 'ruby' (images: default, python)") != std::string::npos);
}
