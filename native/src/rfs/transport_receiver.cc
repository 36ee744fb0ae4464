#include "transport_receiver.h"

#include "checksum.h"

#include <pthread.h>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport_wire.h"

namespace ha::rfs {

namespace {

// A frame still arriving is decrypted in pieces of at least this many bytes (see ReaderLoop).
constexpr size_t kOpenAheadMin = 16u << 10;

std::string PeerOf(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

void SetTimeouts(int fd, int ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

struct Receiver::Session {
  int fd = -1;
  std::string peer;
  FrameCipher tx, rx;
  std::mutex txMu;
  std::mutex qMu;
  std::condition_variable qCv, spaceCv;
  std::deque<Record> q;
  size_t qBytes = 0;
  bool readerDone = false;  // no more records will come
  bool stopApply = false;   // apply nothing more
  std::atomic<uint64_t> received{0}, applied{0};
  std::atomic<bool> closing{false};
  std::string closingReason;
  std::thread reader, applier;
  std::thread sums;                    // manifest builder (StartSums)
  std::atomic<bool> sumsAbort{false};
  ~Session() {
    sumsAbort = true;
    if (sums.joinable()) sums.join();
    if (fd >= 0) close(fd);
  }
};

std::unique_ptr<Receiver> Receiver::Start(const ReceiverOptions& opts, EventFn onEvent, std::string& code,
                                          std::string& message) {
  std::unique_ptr<Receiver> r(new Receiver());
  r->opts_ = opts;
  r->onEvent_ = std::move(onEvent);
  r->rootFd_ = open(opts.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (r->rootFd_ < 0) {
    code = "ERR_RFS_DIR";
    message = "cannot open directory " + opts.dir + ": " + std::strerror(errno);
    return nullptr;
  }
  r->applier_ = std::make_unique<Applier>(r->rootFd_, opts.durable);
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  struct addrinfo* res = nullptr;
  std::string svc = std::to_string(opts.port);
  int gai = getaddrinfo(opts.bind.c_str(), svc.c_str(), &hints, &res);
  if (gai != 0 || !res) {
    code = "ERR_RFS_LISTEN";
    message = "invalid bind address " + opts.bind + ": " + gai_strerror(gai);
    return nullptr;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 8) < 0) {
    code = "ERR_RFS_LISTEN";
    message = "cannot listen on " + opts.bind + ":" + svc + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return nullptr;
  }
  freeaddrinfo(res);
  r->listenFd_ = fd;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  r->port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  r->stopFd_ = eventfd(0, EFD_CLOEXEC);
  r->acceptor_ = std::thread([p = r.get()] {
    pthread_setname_np(pthread_self(), "rfs-rx-accept");
    p->AcceptLoop();
  });
  return r;
}

Receiver::~Receiver() {
  Close();
}

void Receiver::Close(bool drain) {
  {
    std::lock_guard<std::mutex> lk(closeMu_);
    if (closed_) return;
    closed_ = true;
  }
  if (stopFd_ >= 0) {
    uint64_t one = 1;
    ssize_t w = write(stopFd_, &one, sizeof one);
    (void)w;
  }
  if (acceptor_.joinable()) acceptor_.join();
  EndSession(drain);
  if (listenFd_ >= 0) close(listenFd_);
  if (stopFd_ >= 0) close(stopFd_);
  applier_.reset();
  if (rootFd_ >= 0) close(rootFd_);
  listenFd_ = stopFd_ = rootFd_ = -1;
}

void Receiver::Emit(ReceiverEvent&& e) {
  if (onEvent_) onEvent_(std::move(e));
}

ReceiverStats Receiver::Stats() {
  ReceiverStats s;
  s.recordsApplied = recordsApplied_;
  s.receivedAcks = receivedAcks_;
  s.bytesApplied = bytesApplied_;
  s.connections = connections_;
  std::lock_guard<std::mutex> lk(mu_);
  if (session_) {
    s.lastSeqReceived = session_->received;
    s.lastSeqApplied = session_->applied;
    s.lag = s.lastSeqReceived - std::min(s.lastSeqReceived, s.lastSeqApplied);
    std::lock_guard<std::mutex> q(session_->qMu);
    s.connected = !session_->readerDone;
    s.peer = session_->peer;
  }
  return s;
}

void Receiver::AcceptLoop() {
  while (true) {
    struct pollfd fds[2] = {{listenFd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    int rc = poll(fds, 2, -1);
    if (rc < 0) { if (errno == EINTR) continue; return; }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(listenFd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Serve(fd, PeerOf(ss));
  }
}

// Runs on the accept thread: handshake (bounded by handshakeTimeoutMs), then the new stream
// replaces the current one.
void Receiver::Serve(int fd, const std::string& peer) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SetTimeouts(fd, opts_.handshakeTimeoutMs);
  ChannelKeys keys;
  std::string code, message;
  if (!Handshake(fd, opts_.key, false, keys, code, message)) {
    close(fd);
    ReceiverEvent e;
    e.type = "error";
    e.peer = peer;
    e.code = code == "ERR_RFS_LINK" ? "ERR_RFS_AUTH" : code;
    e.message = "rejected " + peer + ": " + message;
    Emit(std::move(e));
    return;
  }
  EndSession();  // the previous stream: its received records are applied first
  auto s = std::make_unique<Session>();
  s->fd = fd;
  s->peer = peer;
  if (!s->tx.Init(keys.send, true) || !s->rx.Init(keys.recv, false)) return;
  uint8_t ack[wire::kAckLen] = {wire::kMsgAck};
  if (!WriteFrame(fd, s->tx, ack, sizeof ack)) return;
  SetTimeouts(fd, 0);
  Session* p = s.get();
  {
    std::lock_guard<std::mutex> lk(mu_);
    session_ = std::move(s);
  }
  connections_++;
  ReceiverEvent e;
  e.type = "connected";
  e.peer = peer;
  Emit(std::move(e));
  p->applier = std::thread([this, p] {
    pthread_setname_np(pthread_self(), "rfs-rx-apply");
    ApplierLoop(p);
  });
  p->reader = std::thread([this, p] {
    pthread_setname_np(pthread_self(), "rfs-rx-read");
    ReaderLoop(p);
  });
}

// Ends the current stream: the reader stops; the applier applies what was received (unless the
// receiver is closing) and stops.
void Receiver::EndSession(bool drain) {
  std::unique_ptr<Session> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    s = std::move(session_);
  }
  if (!s) return;
  bool closing;
  {
    std::lock_guard<std::mutex> lk(closeMu_);
    closing = closed_;
  }
  s->closingReason = closing ? "receiver closed" : "replaced by a new authenticated connection";
  s->closing = true;
  shutdown(s->fd, SHUT_RDWR);
  if (closing && !drain) {
    std::lock_guard<std::mutex> lk(s->qMu);
    s->stopApply = true;
  }
  s->qCv.notify_all();
  s->spaceCv.notify_all();
  if (s->reader.joinable()) s->reader.join();
  if (s->applier.joinable()) s->applier.join();
}

void Receiver::SendAck(Session* s, uint64_t received) {
  uint8_t ack[wire::kAckLen];
  ack[0] = wire::kMsgAck;
  std::lock_guard<std::mutex> lk(s->txMu);
  wire::Put64(ack + 1, received ? received : s->received.load());
  wire::Put64(ack + 9, s->applied);
  WriteFrame(s->fd, s->tx, ack, sizeof ack);  // a failure shows up on the reader
}

void Receiver::StartSums(Session* s, uint64_t id) {
  s->sumsAbort = true;
  if (s->sums.joinable()) s->sums.join();
  s->sumsAbort = false;
  s->sums = std::thread([this, s, id] {
    std::vector<uint8_t> buf;
    auto send = [&](bool last, uint32_t status) {
      std::vector<uint8_t> m(wire::kReplyHeader);
      m[0] = wire::kMsgReply;
      wire::Put64(&m[1], id);
      m[9] = last ? 1 : 0;
      wire::Put32(&m[10], status);
      size_t n = std::min(buf.size(), wire::kReplyPart);
      m.insert(m.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      std::lock_guard<std::mutex> lk(s->txMu);
      return WriteFrame(s->fd, s->tx, m.data(), m.size());
    };
    bool ok = true;
    std::string err = BuildManifest(rootFd_, [&](ManifestEntry&& e) {
      EncodeEntry(e, buf);
      while (ok && buf.size() >= wire::kReplyPart && !s->sumsAbort) ok = send(false, 0);
    }, &s->sumsAbort);
    if (!ok || s->sumsAbort) return;
    if (!err.empty()) {
      buf.assign(err.begin(), err.end());
      send(true, 1);
      return;
    }
    while (buf.size() > wire::kReplyPart && ok) ok = send(false, 0);
    if (ok) send(true, 0);
  });
}

namespace {
// The reader's frame buffers. A frame that carries large writes is handed to the applier in the
// buffer it arrived in (its write records borrow their bytes there, Record::keep holding the
// buffer), and the reader goes on in another one: no copy of the data on the reader's thread,
// which goes back to the socket at once (the primary's acknowledgement reader, woken by our
// acknowledgement, often waits for this CPU). A few buffers go round; when all are out (the
// applier is behind), the records copy their bytes as before. Only the pages a frame fills are
// ever touched.
// One buffer (not zeroed: only what recv writes is touched).
struct FrameBuf {
  explicit FrameBuf(size_t size) : mem(new uint8_t[size]), n(size) {}
  uint8_t* data() { return mem.get(); }
  size_t size() const { return n; }
  std::unique_ptr<uint8_t[]> mem;
  size_t n;
};
class FrameBuffers : public std::enable_shared_from_this<FrameBuffers> {
 public:
  FrameBuffers(size_t size, size_t max) : size_(size), max_(max) {}
  // A buffer, or null when `max` are in use.
  std::shared_ptr<FrameBuf> Get() {
    std::unique_ptr<FrameBuf> b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (out_ >= max_) return nullptr;
      out_++;
      if (!free_.empty()) {
        b = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!b) {
      try {
        b = std::make_unique<FrameBuf>(size_);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        out_--;
        return nullptr;
      }
    }
    auto self = shared_from_this();
    return std::shared_ptr<FrameBuf>(b.release(), [self](FrameBuf* v) {
      std::lock_guard<std::mutex> lk(self->mu_);
      self->out_--;
      self->free_.emplace_back(v);
    });
  }

 private:
  const size_t size_, max_;
  std::mutex mu_;
  size_t out_ = 0;
  std::vector<std::unique_ptr<FrameBuf>> free_;
};
// A frame with at least this many write bytes goes to the applier in its buffer.
constexpr size_t kHandOffMin = 64u << 10;
}  // namespace

void Receiver::ReaderLoop(Session* s) {
  auto buffers = std::make_shared<FrameBuffers>(kMaxFrameLen + kFrameHeader + (256u << 10), 4);
  std::shared_ptr<FrameBuf> cur = buffers->Get();  // the first of 4 (null only without memory)
  FrameBuf* bp = cur.get();
  size_t start = 0, end = 0;
  uint64_t acked = 0;
  std::string code, reason;
  if (!cur) {
    code = "ERR_RFS_FRAME";
    reason = "no memory for a frame buffer (stream from " + s->peer + ")";
  }
  std::vector<Record> recs;
  // The frame at `start` is decrypted as its bytes arrive (in place, `opened` bytes so far), so
  // that its last piece is all that is left to decrypt when its tag arrives: the decryption
  // overlaps the peer's sending. Nothing of it is used before FinishOpen accepts the tag.
  bool opening = false;
  size_t opened = 0;
  bool holdAck = false;  // the last frame ended with a part of a split write (kWriteMore)
  while (code.empty()) {
    // Every complete frame in the buffer.
    while (end - start >= kFrameHeader) {
      const uint8_t* h = bp->data() + start;
      size_t L = (size_t(h[0]) << 24) | (size_t(h[1]) << 16) | (size_t(h[2]) << 8) | h[3];
      if (L < kTagLen + 1 || L > kMaxFrameLen) {
        code = "ERR_RFS_FRAME";
        reason = "bad frame length " + std::to_string(L) + " from " + s->peer + " (garbage or oversized frame)";
        break;
      }
      uint8_t* ct = bp->data() + start + kFrameHeader;
      size_t n = L - kTagLen;
      if (!opening) {
        if (!s->rx.BeginOpen(h)) {
          code = "ERR_RFS_AUTH";
          reason = "frame from " + s->peer + " failed authentication (tampered, replayed, reordered or wrong key)";
          break;
        }
        opening = true;
        opened = 0;
      }
      if (end - start < kFrameHeader + L) {
        // Incomplete: decrypt the whole blocks that arrived (the ciphertext part only).
        size_t have = std::min(end - start - kFrameHeader, n) & ~size_t(15);
        if (have >= opened + kOpenAheadMin) {
          s->rx.Decrypt(ct + opened, have - opened, ct + opened);
          opened = have;
        }
        if (start + kFrameHeader + L > bp->size()) {  // make room for the whole frame
          std::memmove(bp->data(), bp->data() + start, end - start);
          end -= start;
          start = 0;
        }
        break;
      }
      opening = false;
      if (!s->rx.Decrypt(ct + opened, n - opened, ct + opened) || !s->rx.FinishOpen(ct + n)) {
        code = "ERR_RFS_AUTH";
        reason = "frame from " + s->peer + " failed authentication (tampered, replayed, reordered or wrong key)";
        break;
      }
      recs.clear();
      size_t i = 0;
      uint64_t seq = s->received;
      size_t bytes = 0;
      while (i < n) {
        if (ct[i] != wire::kMsgRecord) { code = "ERR_RFS_BAD_RECORD"; reason = "unexpected message type " + std::to_string(ct[i]); break; }
        Record r;
        size_t used = wire::DecodeRecord(ct + i, n - i, r, reason);
        if (used == 0) { code = "ERR_RFS_BAD_RECORD"; break; }
        if (r.seq != seq + 1) {
          code = "ERR_RFS_BAD_RECORD";
          reason = "record seq " + std::to_string(r.seq) + " out of order (expected " + std::to_string(seq + 1) + ")";
          break;
        }
        seq = r.seq;
        bytes += used;
        recs.push_back(std::move(r));
        i += used;
      }
      if (!code.empty()) { reason += " from " + s->peer; break; }
      // The frame is authentic and well formed: acknowledged as received now, before its data is
      // copied out of the frame buffer and queued for the applier (the copy, and a wait for room
      // in a full queue, are off the primary's path; a frame acknowledged this way is queued even
      // when the receiver is closing, and applied by its drain).
      // A frame that ends with a part of a split write (kWriteMore) is acknowledged with the next
      // part, which follows it on the link: its own acknowledgement would cross the link while
      // that part is being sent, and nobody waits for it.
      holdAck = !recs.empty() && recs.back().op == Op::Write && (recs.back().flags & kWriteMore);
      if (!holdAck) {
        SendAck(s, seq);
        acked = seq;
        receivedAcks_++;
      }
      size_t writeBytes = 0;
      for (auto& r : recs)
        if (r.op == Op::Write) writeBytes += r.Size();
      std::shared_ptr<FrameBuf> next;
      if (writeBytes >= kHandOffMin) next = buffers->Get();
      if (next) {
        // This buffer goes with the frame's writes; what arrived after the frame moves to the next.
        for (auto& r : recs) {
          if (r.op == Op::Write) r.keep = cur;
          else r.Own();
        }
        const size_t after = start + kFrameHeader + L;
        if (end > after) std::memcpy(next->data(), bp->data() + after, end - after);
        end -= after;
        start = 0;
        cur = std::move(next);
        bp = cur.get();
      } else {
        for (auto& r : recs) r.Own();
        start += kFrameHeader + L;
      }
      {
        std::unique_lock<std::mutex> lk(s->qMu);
        s->spaceCv.wait(lk, [&] { return s->stopApply || s->closing || s->qBytes < opts_.maxApplyQueueBytes; });
        if (s->stopApply) { code = "ERR_RFS_APPLY"; reason = "the stream stopped applying"; break; }
        for (auto& r : recs) s->q.push_back(std::move(r));
        s->qBytes += bytes;
        s->received = seq;
      }
      s->qCv.notify_one();
    }
    if (!code.empty()) break;
    if (start == end) start = end = 0;
    if (s->received != acked && !holdAck) {
      acked = s->received;
      SendAck(s);
      receivedAcks_++;
    }
    if (end == bp->size()) {  // cannot happen (room is made for a whole frame), but never spin
      code = "ERR_RFS_FRAME";
      reason = "frame buffer full";
      break;
    }
    ssize_t r = recv(s->fd, bp->data() + end, bp->size() - end, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      code = "ERR_RFS_LINK";
      reason = s->closing ? s->closingReason : (r == 0 ? "connection closed by " + s->peer : "link down: " + std::string(std::strerror(errno)));
      break;
    }
    end += static_cast<size_t>(r);
  }
  {
    std::lock_guard<std::mutex> lk(s->qMu);
    s->readerDone = true;
  }
  s->qCv.notify_all();
  shutdown(s->fd, SHUT_RDWR);
  if (code != "ERR_RFS_LINK") {
    ReceiverEvent e;
    e.type = "error";
    e.peer = s->peer;
    e.code = code;
    e.message = reason;
    Emit(std::move(e));
  }
  ReceiverEvent e;
  e.type = "disconnected";
  e.peer = s->peer;
  e.code = code;
  e.message = reason;
  Emit(std::move(e));
}

void Receiver::ApplierLoop(Session* s) {
  std::deque<Record> batch;
  auto lastAck = std::chrono::steady_clock::now();
  bool stop = false;
  while (!stop) {
    {
      std::unique_lock<std::mutex> lk(s->qMu);
      s->qCv.wait(lk, [&] { return s->stopApply || !s->q.empty() || s->readerDone; });
      if (s->stopApply || s->q.empty()) break;
      batch.swap(s->q);
      s->qBytes = 0;
    }
    s->spaceCv.notify_all();
    for (auto& r : batch) {
      ApplyResult res = applier_->Apply(r);
      if (res.kind != ApplyResult::Ok) {
        ReceiverEvent e;
        e.peer = s->peer;
        e.path = res.path;
        e.seq = r.seq;
        e.message = res.message + " (seq " + std::to_string(r.seq) + ")";
        if (res.kind == ApplyResult::BadRecord) {
          e.type = "error";
          e.code = "ERR_RFS_BAD_RECORD";
        } else {
          e.type = "apply-failed";
          e.code = "ERR_RFS_APPLY";
          e.err = res.err;
          // Tell the primary at once (it goes alone rather than waiting for an ack timeout).
          std::vector<uint8_t> m(17 + res.path.size());
          m[0] = wire::kMsgFailed;
          wire::Put64(&m[1], r.seq);
          wire::Put32(&m[9], static_cast<uint32_t>(res.err));
          wire::Put32(&m[13], static_cast<uint32_t>(res.path.size()));
          std::memcpy(&m[17], res.path.data(), res.path.size());
          std::lock_guard<std::mutex> lk(s->txMu);
          WriteFrame(s->fd, s->tx, m.data(), m.size());
        }
        // Only now: the reader, seeing stopApply, shuts the socket down (the message above must
        // leave first, or the primary only sees the link close and cannot say why).
        {
          std::lock_guard<std::mutex> lk(s->qMu);
          s->stopApply = true;
        }
        Emit(std::move(e));
        shutdown(s->fd, SHUT_RDWR);
        s->spaceCv.notify_all();
        stop = true;
        break;
      }
      if (r.op == Op::Sums) StartSums(s, r.seq);
      s->applied = r.seq;
      recordsApplied_++;
      if (r.op == Op::Write) bytesApplied_ += r.Size();
      auto now = std::chrono::steady_clock::now();
      if (r.op == Op::Fsync || (r.op == Op::Write && (r.flags & kWriteSync)) || now - lastAck >= std::chrono::milliseconds(2)) {
        SendAck(s);
        lastAck = now;
      }
    }
    batch.clear();
    if (!stop) {
      SendAck(s);
      lastAck = std::chrono::steady_clock::now();
    }
  }
  applier_->CloseAll();
}

}  // namespace ha::rfs
