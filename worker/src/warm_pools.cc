// WarmVm (a handed-out clone's owner) and WarmPools (the worker's pools by VmSpec).
#include <spdlog/spdlog.h>

#include "paddock/worker/warm_pool.h"
#include "template.h"

namespace paddock::worker {

namespace rt = paddock::runtime;

WarmVm::WarmVm(rt::Provider& provider, std::string vm_id, std::string template_vm)
    : provider_(&provider), vm_id_(std::move(vm_id)), template_vm_(std::move(template_vm)) {}

WarmVm::WarmVm(WarmVm&& other) noexcept
    : provider_(other.provider_),
      vm_id_(std::move(other.vm_id_)),
      template_vm_(std::move(other.template_vm_)),
      live_(other.live_) {
  other.live_ = false;
}

WarmVm& WarmVm::operator=(WarmVm&& other) noexcept {
  if (this != &other) {
    (void)destroy();
    provider_ = other.provider_;
    vm_id_ = std::move(other.vm_id_);
    template_vm_ = std::move(other.template_vm_);
    live_ = other.live_;
    other.live_ = false;
  }
  return *this;
}

WarmVm::~WarmVm() {
  if (auto st = destroy(); !st) {
    spdlog::error("destroy of warm vm '{}' failed: {}", vm_id_, st.error().message());
  }
}

rt::Status WarmVm::destroy() {
  if (!live_) return {};
  live_ = false;
  return provider_->destroy(vm_id_);
}

WarmPools::WarmPools(rt::Provider& provider, WarmPoolConfig config, size_t max_pools,
                     size_t per_tenant)
    : provider_(provider),
      config_(std::move(config)),
      max_pools_(max_pools),
      per_tenant_(per_tenant) {}

WarmPools::~WarmPools() { shutdown(); }

WarmPool* WarmPools::pool_for(const rt::VmSpec& spec, std::string_view tenant) {
  std::lock_guard lock(mu_);
  Key key{spec.image, spec.vcpus, spec.mem_mib};
  auto it = pools_.find(key);
  if (it != pools_.end()) return it->second.get();  // stopped or not: its ready clones still serve
  if (stopped_) return nullptr;
  if (pools_.size() >= max_pools_) {
    spdlog::warn("warm pools: already {} (the most); jobs of {} boot cold", max_pools_,
                 template_prefix(spec));
    return nullptr;
  }
  if (!tenant.empty()) {
    auto made = made_for_.find(tenant);
    if (made != made_for_.end() && made->second >= per_tenant_) {
      if (told_.emplace(tenant).second) {
        spdlog::warn(
            "warm pools: {} made for tenant '{}' (the most per tenant); its jobs of shapes "
            "without a pool ({} now) boot cold",
            per_tenant_, tenant, template_prefix(spec));
      }
      return nullptr;
    }
    ++made_for_[std::string(tenant)];
  }
  spdlog::info("warm pool {}: new (min {}, max {}){}", template_prefix(spec), config_.min_ready,
               config_.max_ready,
               tenant.empty() ? std::string() : " for tenant '" + std::string(tenant) + "'");
  auto pool = std::make_unique<WarmPool>(provider_, spec, config_);
  return pools_.emplace(std::move(key), std::move(pool)).first->second.get();
}

void WarmPools::prepare(const rt::VmSpec& spec) { (void)pool_for(spec, {}); }

std::optional<WarmVm> WarmPools::acquire(const rt::VmSpec& spec, std::string_view tenant) {
  WarmPool* pool = pool_for(spec, tenant);
  if (pool == nullptr) return std::nullopt;
  return pool->acquire();
}

WarmPool* WarmPools::find(const rt::VmSpec& spec) const {
  std::lock_guard lock(mu_);
  auto it = pools_.find(Key{spec.image, spec.vcpus, spec.mem_mib});
  return it == pools_.end() ? nullptr : it->second.get();
}

std::vector<std::pair<std::string, WarmPoolStats>> WarmPools::stats() const {
  std::vector<std::pair<std::string, WarmPoolStats>> out;
  std::lock_guard lock(mu_);
  for (const auto& [key, pool] : pools_) {
    std::string name = template_prefix(pool->spec());
    if (!name.empty() && name.back() == '-') name.pop_back();
    out.emplace_back(std::move(name), pool->stats());
  }
  return out;
}

void WarmPools::stop_refills() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  for (auto& [key, pool] : pools_) pool->stop_refills();
}

void WarmPools::shutdown() {
  std::vector<WarmPool*> pools;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    for (auto& [key, pool] : pools_) pools.push_back(pool.get());
  }
  // The pools themselves live until the destructor: a job still running may call acquire() on
  // one (it answers nullopt once shut down).
  for (auto* pool : pools) pool->shutdown();
}

}  // namespace paddock::worker
