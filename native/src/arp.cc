#include "arp.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <thread>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ha {
namespace {

#pragma pack(push, 1)
struct ArpFrame {
  uint8_t dst[6];
  uint8_t src[6];
  uint16_t ethertype;
  uint16_t htype;
  uint16_t ptype;
  uint8_t hlen;
  uint8_t plen;
  uint16_t oper;
  uint8_t sha[6];
  uint8_t spa[4];
  uint8_t tha[6];
  uint8_t tpa[4];
};
#pragma pack(pop)

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// An AF_PACKET socket bound to one interface, receiving only ARP. Closed by the destructor.
struct ArpSocket {
  int fd = -1;
  int ifindex = 0;
  uint8_t mac[6] = {0};
  std::string error;

  // `receive`: also receive ARP frames (a probe). A send-only socket is opened with protocol 0,
  // so no packet hook is registered: closing a socket that has one waits for an RCU grace period
  // in the kernel (synchronize_net), tens of ms that would sit on the failover path.
  ArpSocket(const std::string& ifname, bool receive) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) { error = "invalid interface name '" + ifname + "'"; return; }
    // Always protocol 0 here: a socket created with a protocol registers its packet hook at
    // once, and bind() to an interface then re-registers it, waiting for an RCU grace period
    // (~15 ms seen). bind() with sll_protocol registers the hook a single time.
    fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) { error = Errno("socket(AF_PACKET)"); return; }
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { error = Errno(("interface " + ifname).c_str()); return; }
    ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { error = Errno("SIOCGIFHWADDR"); return; }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) { error = "interface " + ifname + " is not Ethernet"; return; }
    std::memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (!receive) return;
    struct sockaddr_ll sll;
    std::memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ARP);
    sll.sll_ifindex = ifindex;
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&sll), sizeof sll) < 0) { error = Errno("bind(AF_PACKET)"); return; }
  }
  ~ArpSocket() { if (fd >= 0) close(fd); }

  // Closes the socket on a detached thread: the caller's result is not held up by the kernel's
  // grace period when a receiving packet socket is released.
  void CloseInBackground() {
    int f = fd;
    fd = -1;
    if (f >= 0) std::thread([f]() { close(f); }).detach();
  }
  ArpSocket(const ArpSocket&) = delete;
  ArpSocket& operator=(const ArpSocket&) = delete;

  bool ok() const { return error.empty(); }

  std::string Send(uint32_t spa, uint32_t tpa) {
    ArpFrame f;
    std::memset(&f, 0, sizeof f);
    std::memset(f.dst, 0xff, 6);
    std::memcpy(f.src, mac, 6);
    f.ethertype = htons(ETH_P_ARP);
    f.htype = htons(ARPHRD_ETHER);
    f.ptype = htons(ETH_P_IP);
    f.hlen = 6;
    f.plen = 4;
    f.oper = htons(ARPOP_REQUEST);
    std::memcpy(f.sha, mac, 6);
    std::memcpy(f.spa, &spa, 4);
    std::memcpy(f.tpa, &tpa, 4);
    struct sockaddr_ll to;
    std::memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    ssize_t n = sendto(fd, &f, sizeof f, 0, reinterpret_cast<struct sockaddr*>(&to), sizeof to);
    if (n < 0) return Errno("sendto(ARP)");
    if (static_cast<size_t>(n) != sizeof f) return "short ARP send";
    return "";
  }
};

std::string MacString(const uint8_t* m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

}  // namespace

ArpProbeResult ArpProbe(const std::string& ifname, const std::string& ip, int window_ms, int probes) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  ArpProbeResult r;
  auto elapsed = [&]() { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); };
  struct in_addr target;
  if (inet_pton(AF_INET, ip.c_str(), &target) != 1) { r.error = "not an IPv4 address: " + ip; return r; }
  ArpSocket s(ifname, true);
  if (!s.ok()) { r.error = s.error; return r; }
  struct Closer { ArpSocket& s; ~Closer() { s.CloseInBackground(); } } closer{s};
  // The listening window starts once the socket is ready, so that a slow set-up can never
  // shorten it; r.ms still reports the whole probe.
  const auto tw = clock::now();
  auto in_window = [&]() { return std::chrono::duration<double, std::milli>(clock::now() - tw).count(); };
  if (probes < 1) probes = 1;
  if (window_ms < 1) window_ms = 1;
  // Probe k (0-based) is sent at k * window / probes; the window ends at window_ms. All times are
  // ms since t0 on the steady clock; every wait is clamped to [0, window] so that no arithmetic
  // slip can ever make poll() wait forever.
  const double gap = static_cast<double>(window_ms) / probes;
  int sent = 0;
  for (;;) {
    double now = in_window();
    while (sent < probes && now >= gap * sent) {
      std::string e = s.Send(0, target.s_addr);  // sender 0.0.0.0: a probe, never pollutes caches
      if (!e.empty()) { r.error = e; r.ms = elapsed(); return r; }
      ++sent;
      now = in_window();
    }
    if (now >= window_ms) break;
    double until = sent < probes ? std::min(gap * sent, static_cast<double>(window_ms)) : static_cast<double>(window_ms);
    double left = until - now;
    int wait = left <= 0 ? 0 : static_cast<int>(std::ceil(left));
    if (wait > window_ms) wait = window_ms;
    struct pollfd pfd = {s.fd, POLLIN, 0};
    int pr = poll(&pfd, 1, wait);
    if (pr < 0 && errno != EINTR) { r.error = Errno("poll"); r.ms = elapsed(); return r; }
    if (pr <= 0) continue;
    for (int drained = 0; drained < 1024; ++drained) {
      ArpFrame f;
      ssize_t n = recv(s.fd, &f, sizeof f, 0);
      if (n < 0) break;  // EAGAIN: drained
      if (static_cast<size_t>(n) < sizeof f) continue;
      if (f.ethertype != htons(ETH_P_ARP) || f.ptype != htons(ETH_P_IP) || f.hlen != 6 || f.plen != 4) continue;
      if (std::memcmp(f.sha, s.mac, 6) == 0) continue;  // our own frame
      uint32_t spa, tpa;
      std::memcpy(&spa, f.spa, 4);
      std::memcpy(&tpa, f.tpa, 4);
      // Another host uses the address (any ARP sent from it), or probes for it at the same
      // time (RFC 5227 2.1.1: a simultaneous probe is a conflict too).
      bool conflict = spa == target.s_addr ||
                      (spa == 0 && tpa == target.s_addr && f.oper == htons(ARPOP_REQUEST));
      if (conflict) {
        r.in_use = true;
        r.mac = MacString(f.sha);
        r.ms = elapsed();
        return r;
      }
    }
  }
  r.ms = elapsed();
  return r;
}

std::string ArpAnnounce(const std::string& ifname, const std::string& ip, int count) {
  struct in_addr addr;
  if (inet_pton(AF_INET, ip.c_str(), &addr) != 1) return "not an IPv4 address: " + ip;
  ArpSocket s(ifname, false);
  if (!s.ok()) return s.error;
  if (count < 1) count = 1;
  for (int i = 0; i < count; ++i) {
    std::string e = s.Send(addr.s_addr, addr.s_addr);
    if (!e.empty()) return e;
  }
  return "";
}

}  // namespace ha
