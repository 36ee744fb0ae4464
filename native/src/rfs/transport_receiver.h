// The secondary's half of replication: listens on a TCP port, accepts one authenticated primary
// at a time (a newly authenticated one replaces the current stream, after the records already
// received from it are applied), applies its Records in seq order with an Applier, and
// acknowledges them cumulatively ("received up to M" from the reader thread after each batch of
// frames, "applied up to N" from the applier thread when its queue drains or every 2 ms).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "applier.h"
#include "channel.h"
#include "record.h"

namespace ha::rfs {

struct ReceiverOptions {
  std::string dir;
  std::string bind = "127.0.0.1";
  int port = 0;
  std::vector<uint8_t> key;
  bool durable = true;           // Fsync records fsync on the secondary
  int handshakeTimeoutMs = 5000;
  size_t maxApplyQueueBytes = 64u << 20;
};

struct ReceiverEvent {
  std::string type;     // connected | disconnected | error | apply-failed
  std::string peer;
  std::string code;     // error / disconnected: ERR_RFS_...
  std::string message;
  std::string path;     // apply-failed / bad record
  int err = 0;          // apply-failed: errno
  uint64_t seq = 0;
};

struct ReceiverStats {
  uint64_t recordsApplied = 0;
  uint64_t bytesApplied = 0;   // write data bytes
  uint64_t lastSeqReceived = 0;
  uint64_t lastSeqApplied = 0;
  uint64_t lag = 0;            // received - applied (records)
  uint64_t connections = 0;    // authenticated streams so far
  uint64_t receivedAcks = 0;   // acks the reader sent as frames arrived (not for a frame ending with a kWriteMore part)
  bool connected = false;
  std::string peer;
};

class Receiver {
 public:
  using EventFn = std::function<void(ReceiverEvent&&)>;
  static std::unique_ptr<Receiver> Start(const ReceiverOptions& opts, EventFn onEvent, std::string& code,
                                         std::string& message);
  ~Receiver();
  int Port() const { return port_; }
  ReceiverStats Stats();
  // Stops accepting and reading. With drain, every record already received is applied first
  // (a secondary taking over must apply what it acknowledged as received); without, the rest of
  // the queue is dropped.
  void Close(bool drain = false);

 private:
  struct Session;
  Receiver() = default;
  void AcceptLoop();
  void Serve(int fd, const std::string& peer);
  void EndSession(bool drain = false);
  void ReaderLoop(Session* s);
  void ApplierLoop(Session* s);
  // Acknowledges up to `received` (0: what the session has queued) and what it applied.
  void SendAck(Session* s, uint64_t received = 0);
  // Sums request (record seq id): builds this copy's manifest on its own thread and sends it as
  // reply messages (the applier keeps applying; acknowledgements are not delayed).
  void StartSums(Session* s, uint64_t id);
  void Emit(ReceiverEvent&& e);

  ReceiverOptions opts_;
  EventFn onEvent_;
  int rootFd_ = -1, listenFd_ = -1, stopFd_ = -1, port_ = 0;
  std::unique_ptr<Applier> applier_;
  std::thread acceptor_;
  std::mutex mu_;  // session_ pointer and stats
  std::unique_ptr<Session> session_;
  std::atomic<uint64_t> recordsApplied_{0}, bytesApplied_{0}, connections_{0}, receivedAcks_{0};
  std::mutex closeMu_;
  bool closed_ = false;
};

}  // namespace ha::rfs
