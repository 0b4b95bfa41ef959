#include "template.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <tuple>

#include <spdlog/spdlog.h>

namespace paddock::worker {
namespace {

namespace rt = paddock::runtime;

// Unix milliseconds, strictly increasing within this process: two templates built in the same
// millisecond (a quick rebuild) still get distinct VM ids, and a provider never reuses an id.
uint64_t unique_unix_ms() {
  static std::atomic<uint64_t> last{0};
  const auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  uint64_t prev = last.load();
  uint64_t next = 0;
  do {
    next = std::max(now, prev + 1);
  } while (!last.compare_exchange_weak(prev, next));
  return next;
}

// The image's warm-up (Provider::warmup_argv), run once in the booted template before its
// snapshot, in a scratch directory that is removed after it. A command that exits non-zero or
// times out leaves a template all the same (its clones work, they only start colder) and says why
// in the log; an error of the provider itself (the guest agent gone, say) fails the build, since a
// snapshot of that VM would give clones that cannot run a job.
rt::Status run_warmup(rt::Provider& provider, const std::string& id, const std::string& image) {
  const auto argv = provider.warmup_argv(image);
  if (argv.empty()) return {};
  rt::ExecRequest req;
  req.argv = argv;
  req.cwd = kWarmupDir;
  req.timeout_ms = kWarmupTimeoutMs;
  req.output_cap = 4096;
  const auto t0 = std::chrono::steady_clock::now();
  auto ran = provider.exec(id, req, {});
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  if (!ran) {
    spdlog::warn("warm pool: warm-up of image '{}' in template '{}' could not run: {}", image, id,
                 ran.error().message());
    return ran.error();
  }
  if (ran.value().exit_code != 0 || ran.value().timed_out) {
    spdlog::warn("warm pool: warm-up of image '{}' in template '{}' exited {}{}; stderr: {}", image,
                 id, ran.value().exit_code, ran.value().timed_out ? " (timed out)" : "",
                 ran.value().stderr_data);
  } else {
    spdlog::info("warm pool: warm-up of image '{}' ran in template '{}' ({} ms)", image, id, ms);
  }
  // Its scratch directory goes; what it wrote elsewhere stays in every clone, by design. With the
  // image's rm, or busybox's where the image has no rm on PATH (a busybox-only root).
  for (const std::vector<std::string>& rm :
       {std::vector<std::string>{"rm", "-rf", kWarmupDir},
        std::vector<std::string>{"/bin/busybox", "rm", "-rf", kWarmupDir}}) {
    rt::ExecRequest clean;
    clean.argv = rm;
    clean.timeout_ms = 10'000;
    auto r = provider.exec(id, clean, {});
    if (r && r.value().exit_code == 0) return {};
    if (!r || r.value().exit_code != 127) break;  // there, but it failed: no use trying another
  }
  spdlog::warn("warm pool: could not remove {} in template '{}'", kWarmupDir, id);
  return {};
}

}  // namespace

std::string template_prefix(const rt::VmSpec& spec) {
  return "tpl-" + spec.image + "-" + std::to_string(spec.vcpus) + "x" +
         std::to_string(spec.mem_mib) + "-";
}

bool is_template_of(const rt::SnapshotInfo& info, const rt::VmSpec& spec) {
  if (info.snapshot_id != kTemplateSnapshot) return false;
  const std::string prefix = template_prefix(spec);
  if (info.vm_id.size() <= prefix.size() || info.vm_id.compare(0, prefix.size(), prefix) != 0) {
    return false;
  }
  const bool digits = std::all_of(info.vm_id.begin() + static_cast<long>(prefix.size()),
                                  info.vm_id.end(), [](char c) { return c >= '0' && c <= '9'; });
  return digits && info.spec.image == spec.image && info.spec.vcpus == spec.vcpus &&
         info.spec.mem_mib == spec.mem_mib;
}

std::optional<std::string> find_template(rt::Provider& provider, const rt::VmSpec& spec) {
  auto all = provider.all_snapshots();
  if (!all) {
    spdlog::warn("warm pool {}: cannot list snapshots ({}); building a new template",
                 template_prefix(spec), all.error().message());
    return std::nullopt;
  }
  std::vector<rt::SnapshotInfo> found;
  for (auto& s : all.value()) {
    if (is_template_of(s, spec)) found.push_back(std::move(s));
  }
  if (found.empty()) return std::nullopt;
  // Newest first: by creation time, then by id (whose suffix is the creation time too).
  std::sort(found.begin(), found.end(), [](const rt::SnapshotInfo& a, const rt::SnapshotInfo& b) {
    return std::tie(a.created_unix_ms, a.vm_id) > std::tie(b.created_unix_ms, b.vm_id);
  });
  for (size_t i = 1; i < found.size(); ++i) {
    auto st = provider.delete_snapshot(found[i].vm_id, found[i].snapshot_id);
    if (st || st.error().variant() == rt::Variant::kSnapshotNotFound) {
      spdlog::info("warm pool: deleted older duplicate template '{}'", found[i].vm_id);
    } else {
      spdlog::warn("warm pool: could not delete older template '{}': {}", found[i].vm_id,
                   st.error().message());
    }
  }
  return found.front().vm_id;
}

rt::Result<std::string> build_template(rt::Provider& provider, const rt::VmSpec& spec) {
  const std::string id = template_prefix(spec) + std::to_string(unique_unix_ms());
  if (auto st = provider.create(id, spec); !st) return st.error();
  // From here on the VM exists: every path destroys it (the snapshot outlives it).
  auto fail = [&](const rt::Error& e) -> rt::Result<std::string> {
    if (auto st = provider.destroy(id); !st) {
      spdlog::error("warm pool: destroy of template vm '{}' failed: {}", id, st.error().message());
    }
    return e;
  };
  if (auto st = provider.start(id); !st) return fail(st.error());
  if (auto st = run_warmup(provider, id, spec.image); !st) return fail(st.error());
  if (auto st = provider.stop(id); !st) return fail(st.error());
  if (auto snap = provider.snapshot(id, kTemplateSnapshot); !snap) return fail(snap.error());
  if (auto st = provider.destroy(id); !st) {
    // The snapshot is there and usable; the VM did not go away cleanly. Say so loudly.
    spdlog::error("warm pool: destroy of template vm '{}' failed: {}", id, st.error().message());
  }
  return id;
}

}  // namespace paddock::worker
