#include "paddock/worker/worker.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "broker_session.h"
#include "paddock/metrics/http_server.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/wire/zmq_frames.h"
#include "paddock/worker/executor.h"
#include "slot_pool.h"
#include "worker_metrics.h"

namespace paddock::worker {

namespace sc = paddock::schemas;
namespace rt = paddock::runtime;

namespace {

// Messages waiting for a broker past which a live output chunk is dropped rather than queued: a
// broker that does not take them does not make the worker hold a job's output twice.
constexpr size_t kMaxOutputBacklog = 1024;

// The host's physical memory in MiB; 0 if it cannot be read.
uint64_t host_mem_mib() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) >> 20;
}

// `total` split between `n` brokers: broker i's share (the first `total % n` get one more).
uint64_t share_of(uint64_t total, size_t n, size_t i) {
  return total / n + (i < total % n ? 1 : 0);
}

// A capability's number: at least 1, at most what READY's "vcpus:"/"mem_mib:" allow.
uint32_t capability_number(uint64_t n) {
  return static_cast<uint32_t>(std::clamp<uint64_t>(n, 1, 0x7fffffff));
}

}  // namespace

Capacity capacity_defaults(const Options& o) {
  Capacity c;
  const uint64_t cpus = std::max(1u, std::thread::hardware_concurrency());
  c.vcpus = o.capacity_vcpus != 0 ? o.capacity_vcpus
                                  : static_cast<uint32_t>(std::max<uint64_t>(o.slots, 4 * cpus));
  c.mem_mib =
      o.capacity_mem_mib != 0
          ? o.capacity_mem_mib
          : static_cast<uint32_t>(std::min<uint64_t>(
                0x7fffffff, std::max<uint64_t>(uint64_t{128} * o.slots, host_mem_mib() * 3 / 4)));
  return c;
}

class Worker::Loop {
 public:
  Loop(Options options, std::unique_ptr<rt::Provider> provider);
  // The metrics server, if asked for; a Failure naming the address if it cannot listen.
  base::Status serve_metrics();
  int run(const std::atomic<bool>& drain_requested);
  std::string metrics_address() const { return http_ ? http_->address() : ""; }

 private:
  struct Running {
    size_t session;
    std::string tenant;  // the dispatch's ("" if it named none)
    std::string job_id;
    std::stop_source stop;
  };

  // Runs a job on a slot thread; its answer goes to the loop (SlotPool::answer) before its VM's
  // teardown, so the runner returns nullopt.
  std::optional<std::pair<sc::Command, std::string>> run_one(const sc::JobDispatch& d,
                                                             uint64_t task_id,
                                                             std::stop_token cancel);
  // The frame of a job's outcome, and the metrics of its end.
  std::pair<sc::Command, std::string> answer_of(const sc::JobDispatch& d, Outcome outcome,
                                                Clock::time_point started);
  void on_completion(SlotPool::Completion& c, bool draining);
  void on_broker_message(size_t si, std::span<const std::string_view> parts, Clock::time_point now);
  // Answers a JOB that does not decode with an ERROR, if its job and attempt can be read.
  void refuse_job(BrokerSession& s, std::string_view body, const std::string& why);
  bool drain_complete() const;
  sc::WorkerStatus status() const;
  int finish(int code);
  std::vector<std::string> images() const {
    return options_.images.empty() ? std::vector<std::string>{"default"} : options_.images;
  }
  std::vector<std::string> warm_images() const {
    if (!options_.warm_images.empty()) return options_.warm_images;
    const auto all = images();
    if (std::find(all.begin(), all.end(), "default") == all.end()) return {};
    return {"default"};
  }

  Options options_;
  std::unique_ptr<rt::Provider> provider_;
  WorkerMetrics metrics_;            // before pool_ and http_, whose threads update and read it
  std::unique_ptr<WarmPools> warm_;  // after provider_: its clones go before the provider does
  std::atomic<bool> poisoned_{false};
  zmq::context_t context_{1};
  std::vector<std::unique_ptr<BrokerSession>> sessions_;
  std::string hostname_;  // for heartbeats' WorkerStatus
  std::unordered_map<uint64_t, Running> running_;
  uint64_t next_task_ = 1;
  std::unique_ptr<SlotPool> pool_;  // its slots stop before anything they use goes away
  // Last: stops first; its threads read metrics_ and warm_.
  std::unique_ptr<metrics::HttpServer> http_;
};

Worker::Loop::Loop(Options options, std::unique_ptr<rt::Provider> provider)
    : options_(std::move(options)),
      provider_(std::move(provider)),
      metrics_(options_.worker_id, provider_->backend(), options_.slots) {
  if (options_.warm) {
    WarmPoolConfig config = options_.warm_pool;
    config.vm_prefix = options_.worker_id + "-warm";
    warm_ = std::make_unique<WarmPools>(*provider_, std::move(config), /*max_pools=*/8,
                                        options_.warm_pools_per_tenant);
    // These images' templates are built (or found) right away; the rest on first use.
    for (const auto& image : warm_images()) warm_->prepare(rt::VmSpec{image});
  }
  const SessionTiming timing{std::chrono::milliseconds(options_.heartbeat_ms), options_.liveness,
                             std::chrono::milliseconds(options_.reconnect_min_ms),
                             std::chrono::milliseconds(options_.reconnect_max_ms)};
  sc::Ready identity;
  identity.worker_id = options_.worker_id;
  identity.capabilities = {"backend:" + std::string(provider_->backend())};
  for (const auto& image : images()) identity.capabilities.push_back("image:" + image);
  // Slots and capacity are split between brokers: each has its own share of credits, vCPUs and
  // memory.
  const size_t n = options_.brokers.size();
  const Capacity capacity = capacity_defaults(options_);
  spdlog::info("capacity: {} vCPU(s), {} MiB of guest memory at once", capacity.vcpus,
               capacity.mem_mib);
  for (size_t i = 0; i < n; ++i) {
    const auto share = static_cast<uint32_t>(share_of(options_.slots, n, i));
    sc::Ready own = identity;
    own.capabilities.push_back("vcpus:" +
                               std::to_string(capability_number(share_of(capacity.vcpus, n, i))));
    own.capabilities.push_back("mem_mib:" +
                               std::to_string(capability_number(share_of(capacity.mem_mib, n, i))));
    sessions_.push_back(std::make_unique<BrokerSession>(
        context_, options_.brokers[i], std::move(own), share, timing, options_.curve));
  }
  // The host name goes to the brokers' dashboards with every heartbeat; read once.
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) hostname_ = host;
  for (auto& session : sessions_) session->set_status_source([this] { return status(); });
  pool_ = std::make_unique<SlotPool>(
      options_.slots, [this](const sc::JobDispatch& d, uint64_t task_id, std::stop_token cancel) {
        return run_one(d, task_id, std::move(cancel));
      });
}

base::Status Worker::Loop::serve_metrics() {
  if (!options_.metrics_address.empty()) {
    if (warm_) metrics_.watch(warm_.get());
    http_ = std::make_unique<metrics::HttpServer>();
    metrics::serve_metrics(*http_, metrics_.registry);
    if (auto serving = http_->start(options_.metrics_address); !serving) return serving;
    spdlog::info("metrics on http://{}/metrics", http_->address());
    if (!metrics::is_loopback(http_->address())) {
      spdlog::warn("metrics on {} are served without authentication to whoever can reach it",
                   http_->address());
    }
  }
  return {};
}

sc::WorkerStatus Worker::Loop::status() const {
  sc::WorkerStatus st;
  st.host = hostname_;
  if (!warm_) return st;
  // WarmPools::stats() is thread-safe (the metrics scrape reads it from the HTTP threads too).
  for (const auto& [name, s] : warm_->stats()) {
    if (st.warm_pools.size() == schemas::limits::kMaxWarmPools) break;
    st.warm_pools.push_back({name, s.ready, s.target});
  }
  return st;
}

std::optional<std::pair<sc::Command, std::string>> Worker::Loop::run_one(const sc::JobDispatch& d,
                                                                         uint64_t task_id,
                                                                         std::stop_token cancel) {
  // Runs on a slot thread. The VM id is unique within this worker process.
  const auto t0 = Clock::now();
  ExecutionContext ctx{
      options_.worker_id, options_.worker_id + "-vm-" + std::to_string(task_id), warm_.get(),
      [this](bool warm, std::chrono::microseconds took) { metrics_.vm_started(warm, took); }};
  ctx.answer = [&](const Outcome& outcome) {
    auto [command, body] = answer_of(d, outcome, t0);
    pool_->answer(task_id, command, std::move(body));
  };
  ctx.on_teardown = [this](std::chrono::microseconds took) { metrics_.vm_torn_down(took); };
  if (d.request.stream) {
    ctx.on_output = [&](std::optional<uint32_t> step, sc::OutputStream stream, uint64_t offset,
                        std::string_view data) {
      sc::OutputChunk chunk{d.request.job_id, d.tenant, d.attempt,        step,
                            stream,           offset,   std::string(data)};
      pool_->output(task_id, sc::encode(chunk));
    };
  }
  metrics_.job_started();
  (void)execute_job(*provider_, d, ctx, std::move(cancel));
  metrics_.slot_freed();
  return std::nullopt;
}

std::pair<sc::Command, std::string> Worker::Loop::answer_of(const sc::JobDispatch& d,
                                                            Outcome outcome,
                                                            Clock::time_point started) {
  if (auto* result = std::get_if<sc::JobResult>(&outcome)) {
    std::string body = sc::encode(*result);
    if (body.size() <= sc::limits::kMaxFrameBytes) {
      metrics_.job_finished(true, 0, "", Clock::now() - started);
      return {sc::Command::kResult, std::move(body)};
    }
    // execute_job cut the result to kMaxResultData (fit_result), so this is a bug in the limits'
    // arithmetic; the broker would refuse the frame and the job would never be answered. Say so.
    outcome = invalid_request_error(
        d, options_.worker_id,
        "result: " + std::to_string(body.size()) + " bytes encoded, more than one frame carries (" +
            std::to_string(sc::limits::kMaxFrameBytes) + "); the outputs were not sent");
    spdlog::error("job '{}': {}", d.request.job_id, std::get<sc::JobError>(outcome).message);
  }
  const auto& error = std::get<sc::JobError>(outcome);
  metrics_.job_finished(false, error.code, error.variant, Clock::now() - started);
  if (error.code == rt::code_of(rt::Variant::kStatePoisoned)) poisoned_.store(true);
  return {sc::Command::kError, sc::encode(error)};
}

void Worker::Loop::on_completion(SlotPool::Completion& c, bool draining) {
  auto it = running_.find(c.task_id);
  if (it == running_.end()) return;
  BrokerSession& s = *sessions_[it->second.session];
  if (c.has_answer && c.command == sc::Command::kOutput) {
    // Live output is best effort: with the broker unreachable or not taking what was sent, a
    // chunk is dropped (the submitter sees the gap in the offsets; the RESULT has it all).
    if (s.connected() && s.outbox_size() < kMaxOutputBacklog) {
      s.queue(sc::make_message(c.command, {std::move(c.body)}));
      metrics_.output_sent();
    } else {
      metrics_.output_dropped();
    }
    return;
  }
  // The answer goes out at once; the credit only when the slot is free (its VM torn down).
  if (c.has_answer) s.queue(sc::make_message(c.command, {std::move(c.body)}));
  if (!c.slot_free) return;
  s.job_finished(draining);
  running_.erase(it);
}

void Worker::Loop::on_broker_message(size_t si, std::span<const std::string_view> parts,
                                     Clock::time_point now) {
  BrokerSession& s = *sessions_[si];
  s.heard(now);
  auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToWorker);
  if (!env) {
    // A JOB whose frames are wrong (a body over the frame limit, say) still holds a job and a
    // credit: answered like a JOB that does not decode, if it names its job.
    if (parts.size() == 3 && parts[0] == sc::kProtocolTag && parts[1].size() == 1 &&
        static_cast<sc::Command>(static_cast<uint8_t>(parts[1][0])) == sc::Command::kJob) {
      refuse_job(s, parts[2], env.error().message());
      return;
    }
    spdlog::warn("broker {}: invalid message dropped: {}", s.endpoint(), env.error().message());
    return;
  }
  switch (env->command) {
    case sc::Command::kJob: {
      auto d = sc::decode_job_dispatch(env->bodies[0]);
      if (!d) {
        refuse_job(s, env->bodies[0], d.error().message());
        return;
      }
      s.job_received();
      const uint64_t task = next_task_++;
      std::stop_source stop;
      running_.emplace(task, Running{si, d->tenant, d->request.job_id, stop});
      pool_->submit(task, std::move(d.value()), stop);
      break;
    }
    case sc::Command::kCancel: {
      auto ref = sc::decode_job_ref(env->bodies[0]);
      if (!ref) return;
      for (auto& [task, r] : running_) {
        // Two tenants may use one job_id: a CANCEL naming a tenant stops only that tenant's.
        if (r.session == si && r.job_id == ref->job_id &&
            (ref->tenant.empty() || r.tenant == ref->tenant)) {
          r.stop.request_stop();
        }
      }
      break;
    }
    case sc::Command::kDisconnect:
      s.disconnect(now, "asked to reconnect");
      break;
    case sc::Command::kDrained:
      s.mark_drained();
      break;
    default:
      break;  // HEARTBEAT: being heard is all it does
  }
}

void Worker::Loop::refuse_job(BrokerSession& s, std::string_view body, const std::string& why) {
  const auto ref = sc::peek_dispatch(body);
  if (!ref) {
    // Nothing to answer it with: the broker finds the job again when this worker is lost.
    spdlog::error("broker {}: invalid JOB dropped (its job_id and attempt cannot be read): {}",
                  s.endpoint(), why);
    return;
  }
  // The broker accepted this job, so it is owed an answer, and the JOB spent a credit: answer it
  // with an ERROR naming why (not retryable: every worker would refuse it alike), return the
  // credit.
  spdlog::error(
      "broker {}: JOB for job '{}' (attempt {}) does not decode; answered InvalidRequest: {}",
      s.endpoint(), ref->job_id, ref->attempt, why);
  sc::JobDispatch d;
  d.attempt = ref->attempt;
  d.request.job_id = ref->job_id;
  d.tenant = ref->tenant;
  s.job_received();
  s.queue(sc::make_message(
      sc::Command::kError,
      {sc::encode(invalid_request_error(d, options_.worker_id,
                                        "the worker could not decode the JOB: " + why))}));
  s.job_finished(s.drain_sent());
  s.flush();
}

bool Worker::Loop::drain_complete() const {
  if (!running_.empty()) return false;
  for (const auto& s : sessions_) {
    if (s->socket() != nullptr && (!s->drained() || s->has_outbox())) return false;
  }
  return true;
}

int Worker::Loop::finish(int code) {
  for (auto& s : sessions_) {
    if (zmq::socket_t* sock = s->socket()) {
      s->send(sc::make_message(sc::Command::kDisconnect));
      sock->set(zmq::sockopt::linger, 2000);  // let the last messages leave
    }
  }
  // Ready clones are destroyed; template snapshots stay, a cache for the next start.
  if (warm_) warm_->shutdown();
  return code;
}

int Worker::Loop::run(const std::atomic<bool>& drain_requested) {
  auto now = Clock::now();
  for (auto& s : sessions_) s->connect(now);
  bool draining = false;
  Clock::time_point drain_started;
  std::vector<zmq::message_t> frames;
  std::vector<SlotPool::Completion> done;
  while (true) {
    if (!draining && (drain_requested.load() || poisoned_.load())) {
      draining = true;
      drain_started = now;
      spdlog::info("draining: no new jobs; {} in flight", running_.size());
      if (poisoned_.load()) spdlog::critical("provider state poisoned; this worker stops");
      for (auto& s : sessions_) s->start_drain();
      // No more template builds or restores; clones already ready still serve the jobs granted
      // before the drain, and are destroyed when the drain ends (finish()).
      if (warm_) warm_->stop_refills();
    }
    std::vector<zmq::pollitem_t> items{{nullptr, pool_->completion_fd(), ZMQ_POLLIN, 0}};
    std::vector<size_t> index;
    auto deadline = now + std::chrono::milliseconds(100);  // also how often flags are looked at
    for (size_t i = 0; i < sessions_.size(); ++i) {
      deadline = std::min(deadline, sessions_[i]->next_deadline());
      if (zmq::socket_t* sock = sessions_[i]->socket()) {
        items.push_back({sock->handle(), 0, ZMQ_POLLIN, 0});
        index.push_back(i);
      }
    }
    deadline = std::min(deadline, pool_->kick(Clock::now()));
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    try {
      zmq::poll(items, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    now = Clock::now();
    if (items[0].revents & ZMQ_POLLIN) {
      // Every outcome since the last turn: their RESULTs, then one CREDIT per broker for all.
      pool_->take_completions(done);
      for (auto& c : done) on_completion(c, draining);
    }
    for (size_t k = 0; k < index.size(); ++k) {
      if ((items[k + 1].revents & ZMQ_POLLIN) == 0) continue;
      for (int burst = 0; burst < 1000; ++burst) {
        zmq::socket_t* sock = sessions_[index[k]]->socket();
        if (sock == nullptr || !wire::recv_message(*sock, frames)) break;
        auto parts = wire::views(frames);
        on_broker_message(index[k], parts, now);
      }
    }
    for (auto& s : sessions_) {
      s->housekeeping(now);
      s->flush();
    }
    if (draining && drain_complete()) {
      spdlog::info("drained; disconnecting");
      return finish(poisoned_.load() ? 3 : 0);
    }
    if (draining && now - drain_started > std::chrono::milliseconds(options_.drain_timeout_ms)) {
      spdlog::error("drain timeout: abandoning {} job(s); their brokers will re-queue them",
                    running_.size());
      return finish(poisoned_.load() ? 3 : 1);
    }
  }
}

base::Expected<std::unique_ptr<Worker>> Worker::open(Options options,
                                                     std::unique_ptr<rt::Provider> provider) {
  std::unique_ptr<Loop> loop;
  try {  // cppzmq reports by throwing (a bad broker endpoint), and so does std::thread
    loop = std::make_unique<Loop>(std::move(options), std::move(provider));
  } catch (const zmq::error_t& e) {
    return base::fail(std::string("cannot connect: ") + e.what());
  } catch (const std::system_error& e) {
    return base::fail(e.what());
  }
  if (auto serving = loop->serve_metrics(); !serving) return std::move(serving).error();
  return std::unique_ptr<Worker>(new Worker(std::move(loop)));
}

Worker::Worker(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
Worker::~Worker() = default;
std::string Worker::metrics_address() const { return loop_->metrics_address(); }
int Worker::run() { return loop_->run(drain_requested_); }

}  // namespace paddock::worker
