// Raw ARP on one interface (AF_PACKET): RFC 5227 probe (is an address answered by another
// host?) and announcement (gratuitous ARP). Plain C++ with no Node types: called from worker
// threads (probe) or inline (announce, a single non-blocking send).
#pragma once
#include <cstdint>
#include <string>

namespace ha {

struct ArpProbeResult {
  bool in_use = false;
  std::string mac;      // the MAC that answered, "aa:bb:..." (lower case), if in_use
  double ms = 0;        // how long the probe took
  std::string error;    // non-empty on failure (what failed and errno text)
};

// Sends `probes` ARP probes for `ip` on `ifname` (spread over the window) and listens
// `window_ms` for any ARP packet whose sender address is `ip` from another MAC, or another
// host's probe for the same address. Blocking: run it off the JS thread.
ArpProbeResult ArpProbe(const std::string& ifname, const std::string& ip, int window_ms, int probes);

// Sends `count` gratuitous ARP announcements (request, sender = target = ip) on `ifname`.
// Returns an empty string on success, else the error.
std::string ArpAnnounce(const std::string& ifname, const std::string& ip, int count);

}  // namespace ha
