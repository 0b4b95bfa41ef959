// Internal: the broker's event loop state and handlers. broker.cc runs the loop and dispatches;
// client_side.cc handles submitter messages; worker_side.cc handles worker messages.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "broker_metrics.h"
#include "curve_auth.h"
#include "dashboard/access.h"
#include "dashboard/api.h"
#include "dashboard/recorder.h"
#include "job_queue.h"
#include "journal.h"
#include "log_limiter.h"
#include "paddock/broker/broker.h"
#include "paddock/metrics/http_server.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "pg_store.h"
#include "worker_registry.h"

namespace paddock::broker {

class Broker::Loop {
 public:
  explicit Loop(Options options);

  Stats run(const std::atomic<bool>& stop);

  zmq::context_t context{1};
  zmq::socket_t clients;
  zmq::socket_t workers;
  std::string client_endpoint;
  std::string worker_endpoint;
  std::string metrics_address;   // bound; "" without a metrics server
  std::string curve_public_key;  // "" in plaintext

 private:
  // client_side.cc
  void on_client_message(const std::string& route, std::span<const std::string_view> parts);
  void on_submit(const std::string& route, const std::vector<std::string_view>& bodies);
  void on_cancel(const std::string& route, std::string_view body);
  void on_fetch(const std::string& route, const std::vector<std::string_view>& bodies);
  // An ERROR 100 InvalidRequest (counted and logged); `index`: the body it answers, of a message
  // with bodies (PROTOCOL.md, "JobError"), nullopt for a message that broke the frame rules.
  std::vector<std::string> invalid_reply(std::string job_id, const std::string& message,
                                         std::optional<uint32_t> index);
  void reply_invalid(const std::string& route, std::string job_id, const std::string& message,
                     std::optional<uint32_t> index = std::nullopt);
  // One SUBMIT body's reply: accepted (its job_id), or a REJECTED or ERROR message, or neither (a
  // shared-queue turn whose commit fails answers it REJECTED then).
  struct SubmitReply {
    std::string accepted;
    std::vector<std::string> message;
  };
  // A SUBMIT body for the shared queue: its request, its bytes, and its place in the message.
  struct SharedSubmit {
    schemas::JobRequest request;
    std::string_view body;
    size_t index = 0;
  };

  // worker_side.cc
  // `first`: the message's first frame after the routing id (its connection's properties).
  void on_worker_message(const std::string& route, std::span<const std::string_view> parts,
                         const zmq::message_t& first);
  void on_ready(const std::string& route, std::string_view body, const zmq::message_t& first);
  void on_outcome(WorkerState& w, schemas::Command command, std::string_view body);
  void worker_gone(const std::string& route, const char* why);

  // broker.cc
  // Throws std::runtime_error if the endpoints would carry plaintext off this machine.
  // Where the dashboard reads jobs that left its ring: this broker's store, read-only.
  dashboard::StoreLookup store_lookup() const;
  void check_security() const;
  void dispatch();
  // Answers every queued job of `image` ERROR UnknownImage, naming the images there are.
  void fail_unknown_image(std::string image);
  void tick();
  // The held-job watchdog (Options::overdue_margin_ms): jobs on live workers past their bound.
  void take_back_overdue();
  // Sends a job's final answer (RESULT or ERROR, already encoded) to every waiting route; the
  // decoded answer (one of `result`, `error`) is for the dashboard.
  void answer(const Job& job, schemas::Command command, const std::string& body,
              const schemas::JobResult* result, const schemas::JobError* error);
  void answer_error(const Job& job, schemas::JobCode code, const std::string& message,
                    bool retryable);
  // With a journal, client messages wait in outbox_ until the turn's commit: nothing is said that
  // a crash could take back.
  void to_client(const std::string& route, std::vector<std::string> parts);
  void send_to_client(const std::string& route, std::vector<std::string> parts);
  bool commit_and_send();
  void recover();
  // Retryable failures waiting for their backoff, by when they go back to the queue.
  void release_retries();
  std::multimap<Clock::time_point, std::string> retry_at_;
  void to_worker(const std::string& route, std::vector<std::string> parts);
  void flush_pending();
  uint64_t now_unix_ms() const;
  // The loop's state into the metrics' gauges and counters (at most every kPublishInterval).
  void publish_metrics();
  // The dashboard's snapshot (at most every dashboard::kPublishInterval).
  void publish_dashboard();

  // shared_queue.cc: several brokers on one PostgreSQL queue (Options::store_url).
  // At the start of a turn: re-joins after a failed turn, then what other brokers notified.
  void shared_turn_start();
  // Claims queued jobs for the credits workers gave and this broker has no queued job for.
  void claim_for_credits();
  // Every heartbeat: the lease, dead brokers' jobs, expired deadlines, the queue's size.
  void shared_tick();
  // A turn's writes did not commit: nothing of it is sent, every job this broker held is
  // forgotten (the store gives them back to the queue when it re-joins).
  void shared_failed(const std::string& error);
  // SUBMIT of jobs this broker does not hold: stored together (two statements for the lot).
  // Fills in replies[job.index] of each job.
  void submit_shared(const std::string& route, const std::vector<SharedSubmit>& jobs,
                     std::vector<SubmitReply>& replies, std::vector<Store::Answer>& known_answers);
  void cancel_shared(const std::string& route, const std::string& job_id);
  void fetch_shared(const std::string& route, const std::string& job_id);
  // Answers another broker (or this one) stored: to the routes waiting for them here.
  void deliver_answered(const std::vector<std::string>& job_ids);
  void deliver_answer(const std::string& job_id, const Store::Answer& answer);
  // The ERROR UnknownJob of a job the shared queue does not hold.
  std::vector<std::string> unknown_in_queue(const std::string& job_id);
  // The answers of this turn's jobs, stored in one statement before the commit. Where another
  // broker answered a job first (it ran it before this one claimed it again), its stored answer
  // goes to the job's routes instead: a submitter hears one answer per job.
  struct SharedAnswer {
    std::string job_id;
    uint8_t command = 0;
    std::string body;
    Routes routes;
  };
  std::vector<SharedAnswer> shared_answers_;
  // The jobs each route SUBMITted this turn (sent ACCEPTED at its commit). If the turn fails they
  // are REJECTED (retryable) instead of left unanswered: the submitter knows to submit again.
  std::vector<std::pair<std::string, std::vector<std::string>>> turn_submits_;
  void flush_shared_answers();
  // After a re-join: claims wanted, and the answers stored while away go to their waiters.
  void rejoined();
  PgStore* shared_ = nullptr;  // journal_, when it is the shared queue
  // Routes waiting for jobs this broker does not hold (another broker claimed them, or nobody yet).
  std::unordered_map<std::string, Routes> waiters_;
  // A NOTIFY said jobs were queued, or the last claim got all it asked for: claim when credits
  // free.
  bool claim_wanted_ = true;
  Clock::time_point next_claim_;  // otherwise claims are tried this often (kClaimPoll)
  Clock::time_point next_rejoin_;
  uint64_t shared_unanswered_ = 0;  // jobs in the shared queue without an answer, as of a tick

  Options options_;
  JobQueue jobs_;
  WorkerRegistry registry_;
  std::vector<std::string> blocked_images_;  // dispatch()'s, kept for its capacity
  Stats stats_;
  LogLimiter protocol_log_{20};  // protocol violations logged per second at most
  Clock::time_point now_;
  Clock::time_point next_tick_;
  // Answers to clients whose pipe was full, retried every loop turn; bounded in bytes per client
  // and in all (Options::max_undelivered_bytes*).
  struct PendingAnswers {
    std::deque<std::vector<std::string>> queue;
    size_t bytes = 0;
  };
  std::unordered_map<std::string, PendingAnswers> pending_;
  size_t pending_total_ = 0;  // messages in pending_
  size_t pending_bytes_ = 0;  // their bytes
  // The job store: the embedded journal (embedded_) or the shared queue (shared_); nullptr: none.
  std::unique_ptr<Store> journal_;
  Journal* embedded_ = nullptr;
  // Jobs stored without an answer as of the journal's last commit (what a restart re-queues).
  size_t unanswered_at_commit_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
  std::vector<std::pair<std::string, std::vector<std::string>>> outbox_;
  BrokerMetrics metrics_;
  bool publish_pending_ = false;  // something happened since the last publish_metrics()
  Clock::time_point next_publish_;
  // With CURVE: the ZAP handler and the handshake monitors of both endpoints.
  std::unique_ptr<ZapHandler> zap_;
  std::unique_ptr<HandshakeMonitor> client_handshakes_;
  std::unique_ptr<HandshakeMonitor> worker_handshakes_;
  // With the metrics server: what the dashboard shows (nullptr without a server).
  std::unique_ptr<dashboard::Access> dashboard_access_;
  std::unique_ptr<dashboard::Recorder> dashboard_;
  bool dashboard_pending_ = false;  // something happened since the last publish_dashboard()
  Clock::time_point next_dashboard_;
  // Last: its threads read metrics_ and the dashboard's snapshots, so it stops first.
  std::unique_ptr<metrics::HttpServer> http_;
};

}  // namespace paddock::broker
