// The guest's network, set up once at boot by the agent (PID 1): lo up, and, when the VM has a
// virtio-net interface, eth0 with the address every Paddock guest has (runtime/network.h:
// 172.30.0.2/30, gateway 172.30.0.1 on the host's TAP) and a default route through it. The
// same address in every VM keeps the clones of one snapshot working; the host decides, per VM,
// whether anything lies beyond the gateway.
#pragma once

#include <string>
#include <vector>

namespace paddock::guest {

// Returns what failed (empty when all is well, or when there is no eth0: a VM without a network).
// `configured` is set to a line saying what was done.
std::vector<std::string> configure_network(std::string& configured);

}  // namespace paddock::guest
