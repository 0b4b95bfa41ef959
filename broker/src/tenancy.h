// Tenants (PROTOCOL.md, "Tenants"; broker/README.md, "Tenants"). A tenant is the name of the
// submitter's key on the broker's client allowlist (CURVE); without CURVE every submitter is the
// local tenant (Options::local_tenant, "local" unless the operator names it otherwise).
//
// Job ids are the submitters' and scoped per tenant: inside the broker, in its stores and on its
// dashboard, a job is known by its key "<tenant>/<job_id>". A job_id cannot contain '/' (the
// JobRequest rules), so the key splits at its first one. Everything a submitter is told carries
// its own job_id (job_error() and the stores' ACCEPTED take the key apart), and a worker is sent
// the tenant beside the request, which it echoes in the outcome.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "paddock/schemas/messages.h"

namespace paddock::broker {

inline constexpr std::string_view kLocalTenant = "local";

inline std::string job_key(std::string_view tenant, std::string_view job_id) {
  std::string key;
  key.reserve(tenant.size() + 1 + job_id.size());
  key.append(tenant).append(1, '/').append(job_id);
  return key;
}

// The submitter's job_id of a key ("" for ""); a string without '/' is taken as a job_id already.
inline std::string_view key_job_id(std::string_view key) {
  const auto slash = key.find('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

// The tenant of a key ("" when it has none).
inline std::string_view key_tenant(std::string_view key) {
  const auto slash = key.find('/');
  return slash == std::string_view::npos ? std::string_view{} : key.substr(0, slash);
}

// A CANCEL's body for a worker: the submitter's job_id and the tenant, of the job's key.
inline schemas::JobRef worker_ref(std::string_view key) {
  return schemas::JobRef{std::string(key_job_id(key)), std::string(key_tenant(key))};
}

}  // namespace paddock::broker
