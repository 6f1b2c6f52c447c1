#include "tessera/net/tcp_transport.h"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "tessera/core/fiber_pool.h"
#include "tessera/net/auth.h"

namespace tessera::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

Status TcpOptions::Validate() const {
  if (secret.size() < kMinSecretBytes) {
    return InvalidArgument("the shared secret has " + std::to_string(secret.size()) +
                           " bytes; at least " + std::to_string(kMinSecretBytes) + " needed");
  }
  if (max_frame_bytes < 1024) return InvalidArgument("--max-frame-bytes must be at least 1024");
  if (port_min > port_max || (port_min == 0) != (port_max == 0)) {
    return InvalidArgument("--port-range " + std::to_string(port_min) + "-" +
                           std::to_string(port_max) + ": expected A-B with 1 <= A <= B <= 65535");
  }
  if (heartbeat_every.count() <= 0 || silence_timeout <= heartbeat_every) {
    return InvalidArgument("the silence timeout must be longer than the heartbeat interval");
  }
  return Status::Ok();
}

namespace {

constexpr std::uint32_t kHandshakeFrameBytes = 4096;  // before authentication

// Blocking frame I/O for the set-up phase; the socket's receive timeout bounds every read.
// With a cipher, the frame is sealed (after the handshake).
Status WriteFrame(tcp::socket& s, std::string_view body, FrameCipher* seal = nullptr) {
  std::string out;
  AppendFrame(out, body);
  if (seal) seal->Seal(out);
  boost::system::error_code ec;
  asio::write(s, asio::buffer(out), ec);
  if (ec) return Unavailable("write failed: " + ec.message());
  return Status::Ok();
}

// Reads exactly n bytes by the deadline (Asio's blocking reads retry past SO_RCVTIMEO, so the
// set-up phase polls the descriptor itself).
Status ReadExactly(tcp::socket& s, char* buf, std::size_t n, Clock::time_point deadline) {
  const int fd = s.native_handle();
  std::size_t got = 0;
  while (got < n) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return Unavailable("timed out waiting for the peer");
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
    if (r == 0) return Unavailable("timed out waiting for the peer");
    if (r < 0) {
      if (errno == EINTR) continue;
      return Unavailable(std::string("poll failed: ") + std::strerror(errno));
    }
    const ssize_t k = ::recv(fd, buf + got, n - got, 0);
    if (k == 0) return Unavailable("connection closed");
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return Unavailable(std::string("read failed: ") + std::strerror(errno));
    }
    got += static_cast<std::size_t>(k);
  }
  return Status::Ok();
}

StatusOr<Frame> ReadFrame(tcp::socket& s, std::uint32_t max_bytes, Clock::time_point deadline,
                          FrameCipher* open = nullptr) {
  if (open) max_bytes += kSealBytes;
  unsigned char prefix[4];
  TESSERA_RETURN_IF_ERROR(ReadExactly(s, reinterpret_cast<char*>(prefix), 4, deadline));
  const std::uint32_t n = (std::uint32_t{prefix[0]} << 24) | (std::uint32_t{prefix[1]} << 16) |
                          (std::uint32_t{prefix[2]} << 8) | std::uint32_t{prefix[3]};
  if (n > max_bytes) {
    return InvalidArgument("frame of " + std::to_string(n) +
                           " bytes announced, over the limit of " + std::to_string(max_bytes));
  }
  std::string body(n, '\0');
  TESSERA_RETURN_IF_ERROR(ReadExactly(s, body.data(), n, deadline));
  if (!open) return DecodeFrame(body, max_bytes);
  TESSERA_ASSIGN_OR_RETURN(std::string_view plain, open->OpenInPlace(body));
  return DecodeFrame(plain, max_bytes);
}

std::string Peer(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("unknown peer")
            : ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

struct TcpTransport::Impl {
  struct Connection {
    Connection(asio::io_context& io, std::uint32_t max_frame_bytes)
        : socket(io), reader(max_frame_bytes) {}
    tcp::socket socket;
    int process = -1;
    FrameReader reader;
    FiberMutex mu;  // guards the send queue (senders are fibers; the I/O thread locks it too)
    FiberCondition drained;
    std::deque<std::string> queue;  // framed bytes waiting to be written, a string per send
    std::size_t queued_bytes = 0;
    std::vector<std::string> writing_now;  // what the I/O thread is writing (gathered)
    std::vector<asio::const_buffer> buffers;
    std::size_t writing_bytes = 0;
    bool writing = false;
    std::atomic<std::int64_t> last_heard{0};  // steady_clock ticks
    std::atomic<bool> left{false};            // it said a clean goodbye: nothing more from it
    // The connection's two directions (net/auth.h): every frame after the handshake is sealed
    // (under mu) and opened (on the I/O thread) with these.
    std::unique_ptr<FrameCipher> seal, open;

    // `framed` sealed for this connection (mu held, or before the I/O thread starts).
    std::string Sealed(std::string framed) {
      if (seal) seal->Seal(framed);
      return framed;
    }
  };

  Impl(const TcpOptions& o, int processes)
      : opts(o), acceptor(io), heartbeat(io), conns(static_cast<std::size_t>(processes)) {}

  TcpOptions opts;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::ip::address bound;  // what the listener binds (--bind resolved)
  asio::steady_timer heartbeat;
  std::thread io_thread;
  std::vector<std::unique_ptr<Connection>> conns;        // by process; null for this one
  std::vector<std::unique_ptr<Mailbox<Message>>> boxes;  // by rank; null when not hosted
  std::atomic<std::uint64_t> payload_bytes{0}, wire_bytes{0};
  std::atomic<bool> running{false};
  mutable std::mutex fail_mu;
  Status failed;  // first failure
  std::atomic<bool> has_failed{false};
  std::uint64_t heartbeats = 0;
  std::atomic<bool> leaving{false};  // our goodbye is queued: no more heartbeats
  // This process's run (BeginRun). run_mu orders its change against the I/O thread's
  // delivery; senders (never running during BeginRun) read it alone.
  std::mutex run_mu;
  std::atomic<std::uint64_t> run{0};
  std::vector<std::vector<Message>> early;  // by rank: messages of runs not begun yet
  std::vector<int> process_of_rank;         // the process hosting each rank
  std::mutex left_mu;                       // with left_cv: Leave waits for the peers' goodbyes
  std::condition_variable left_cv;
  int peers_left = 0;

  void Fail(const Status& s) {
    {
      std::lock_guard lock(fail_mu);
      if (has_failed.load()) return;
      failed = s;
      has_failed.store(true);
    }
    for (auto& b : boxes) {
      if (b) b->Close();
    }
    for (auto& c : conns) {
      if (!c) continue;
      std::unique_lock lock(c->mu);
      c->drained.notify_all();
    }
    // Tell the peers why before closing, so that they report the cause ("process 1 failed:
    // lost process 2") rather than only this process going away. Only where no frame is
    // half-written, and without waiting: a dead or stuck peer does not hold us.
    std::string bye;
    AppendFrame(bye, EncodeGoodbye(s.message()));
    asio::post(io, [this, bye = std::move(bye)] {
      boost::system::error_code ec;
      for (auto& c : conns) {
        if (!c) continue;
        {
          std::unique_lock lock(c->mu);
          if (!c->writing && c->queue.empty() && !c->left.load()) {
            const std::string sealed = c->Sealed(bye);
            (void)::send(c->socket.native_handle(), sealed.data(), sealed.size(),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
          }
        }
        c->socket.close(ec);
      }
      heartbeat.cancel();
    });
    std::lock_guard lock(left_mu);
    left_cv.notify_all();
  }

  void PeerLeft(Connection& c) {
    std::lock_guard lock(left_mu);
    c.left.store(true);
    ++peers_left;
    left_cv.notify_all();
  }

  Status Failure() const {
    std::lock_guard lock(fail_mu);
    return failed;
  }

  // Reads straight into the connection's frame reader, up to kReadChunk bytes at a time.
  static constexpr std::size_t kReadChunk = 256u << 10;
  void StartRead(Connection& c) {
    c.socket.async_read_some(
        asio::buffer(c.reader.Space(kReadChunk), kReadChunk),
        [this, &c](const boost::system::error_code& ec, std::size_t n) {
          if (ec) {
            if (running.load() && !c.left.load()) {
              Fail(Unavailable(
                  "lost process " + std::to_string(c.process) + ": " +
                  (ec == asio::error::eof ? std::string("connection closed") : ec.message())));
            }
            return;
          }
          c.last_heard.store(Clock::now().time_since_epoch().count());
          c.reader.Commit(n);
          while (true) {
            auto body = c.reader.NextMutable();
            if (!body.ok()) {
              Fail(InvalidArgument("process " + std::to_string(c.process) + ": " +
                                   body.status().message()));
              return;
            }
            if (!*body) break;
            std::string_view plain((*body)->data(), (*body)->size());
            if (c.open) {
              auto opened = c.open->OpenInPlace(**body);
              if (!opened.ok()) {
                Fail(InvalidArgument("process " + std::to_string(c.process) + ": " +
                                     opened.status().message()));
                return;
              }
              plain = *opened;
            }
            auto frame = DecodeFrame(plain, opts.max_frame_bytes);
            if (!frame.ok()) {
              Fail(InvalidArgument("process " + std::to_string(c.process) +
                                   " sent a bad frame: " + frame.status().message()));
              return;
            }
            if (frame->kind == Frame::Kind::kHeartbeat) continue;
            if (frame->kind == Frame::Kind::kGoodbye) {
              if (!frame->reason.empty()) {
                Fail(Unavailable("process " + std::to_string(c.process) +
                                 " failed: " + frame->reason));
              } else {
                PeerLeft(c);
              }
              return;  // nothing follows a goodbye
            }
            if (frame->kind != Frame::Kind::kMessages) {
              Fail(InvalidArgument("process " + std::to_string(c.process) +
                                   " sent a set-up frame after set-up"));
              return;
            }
            for (Message& m : frame->messages) {
              if (m.to < 0 || static_cast<std::size_t>(m.to) >= boxes.size() || !boxes[m.to]) {
                Fail(InvalidArgument("process " + std::to_string(c.process) +
                                     " sent a message for rank " + std::to_string(m.to) +
                                     ", which this process does not host"));
                return;
              }
              // A message speaks for a rank of the process whose connection it came on.
              if (m.from < 0 || static_cast<std::size_t>(m.from) >= process_of_rank.size() ||
                  process_of_rank[static_cast<std::size_t>(m.from)] != c.process) {
                Fail(InvalidArgument("process " + std::to_string(c.process) +
                                     " sent a message as rank " + std::to_string(m.from) +
                                     ", which it does not host"));
                return;
              }
              Deliver(std::move(m));
            }
          }
          StartRead(c);
        });
  }

  // I/O thread: a message of the current run to its mailbox, one of a later run aside until
  // BeginRun, one of an earlier run nowhere.
  void Deliver(Message m) {
    std::lock_guard lock(run_mu);
    const auto to = static_cast<std::size_t>(m.to);
    const std::uint64_t now = run.load(std::memory_order_relaxed);
    if (m.run == now) {
      boxes[to]->Push(std::move(m));
    } else if (m.run > now) {
      early[to].push_back(std::move(m));
    }
  }

  // I/O thread: writes whatever is queued on `c`, then looks again.
  void StartWrite(Connection& c) {
    {
      std::unique_lock lock(c.mu);
      if (c.queue.empty()) {
        c.writing = false;
        return;
      }
      for (std::string& s : c.queue) c.writing_now.push_back(std::move(s));
      c.queue.clear();
      // Only now: a short string keeps its bytes inside the object, which the vector moves.
      c.buffers.clear();
      for (const std::string& s : c.writing_now) c.buffers.emplace_back(s.data(), s.size());
      c.writing_bytes = c.queued_bytes;
      c.queued_bytes = 0;
    }
    asio::async_write(c.socket, c.buffers,
                      [this, &c](const boost::system::error_code& ec, std::size_t n) {
                        wire_bytes.fetch_add(n, std::memory_order_relaxed);
                        {
                          std::unique_lock lock(c.mu);
                          c.writing_now.clear();
                          c.writing_bytes = 0;
                          c.drained.notify_all();
                        }
                        if (ec) {
                          if (running.load() && !c.left.load()) {
                            Fail(Unavailable("lost process " + std::to_string(c.process) +
                                             ": write failed: " + ec.message()));
                          }
                          return;
                        }
                        StartWrite(c);
                      });
  }

  // Queues framed bytes on `c`; waits (parking the fiber) while the queue is over the limit.
  Status Enqueue(Connection& c, std::string framed) {
    std::unique_lock lock(c.mu);
    c.drained.wait(lock, [&] {
      return has_failed.load() || c.queued_bytes + c.writing_bytes < opts.max_queued_bytes;
    });
    if (has_failed.load()) return Failure();
    if (c.seal) c.seal->Seal(framed);
    if (!c.writing && c.queue.empty()) {
      // Nothing is being written: try the socket right here, sparing the I/O thread a
      // wake-up (the I/O thread writes only while c.writing is set, so the bytes cannot
      // interleave). Whatever the socket does not take now is queued for the I/O thread.
      const ssize_t n = ::send(c.socket.native_handle(), framed.data(), framed.size(),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        wire_bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        if (static_cast<std::size_t>(n) == framed.size()) return Status::Ok();
        framed.erase(0, static_cast<std::size_t>(n));
      }
    }
    QueueLocked(c, std::move(framed));
    return Status::Ok();
  }

  // Queues sealed frames on `c` (c.mu held) and starts the writer if it is idle.
  void QueueLocked(Connection& c, std::string framed) {
    c.queued_bytes += framed.size();
    c.queue.push_back(std::move(framed));
    if (!c.writing) {
      c.writing = true;
      asio::post(io, [this, &c] { StartWrite(c); });
    }
  }

  void Beat() {
    heartbeat.expires_after(opts.heartbeat_every);
    heartbeat.async_wait([this](const boost::system::error_code& ec) {
      if (ec || has_failed.load()) return;
      const auto now = Clock::now().time_since_epoch().count();
      const auto silence =
          std::chrono::duration_cast<Clock::duration>(opts.silence_timeout).count();
      std::string beat;
      AppendFrame(beat, EncodeHeartbeat(++heartbeats));
      for (auto& c : conns) {
        if (!c || c->left.load()) continue;
        if (now - c->last_heard.load() > silence) {
          Fail(Unavailable("lost process " + std::to_string(c->process) + ": silent for " +
                           std::to_string(opts.silence_timeout.count()) + " ms"));
          return;
        }
        if (leaving.load()) continue;
        std::unique_lock lock(c->mu);
        QueueLocked(*c, c->Sealed(beat));
      }
      Beat();
    });
  }
};

namespace {

// --bind as an address: an address as it is, a host name resolved (IPv4 first).
StatusOr<asio::ip::address> BindAddress(const std::string& bind) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(bind, ec);
  if (!ec) return address;
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto found = resolver.resolve(bind, "", ec);
  if (ec || found.empty()) {
    return InvalidArgument("--bind '" + bind + "': neither an address nor a host name (" +
                           (ec ? ec.message() : std::string("no address")) + ")");
  }
  for (const auto& e : found) {  // IPv4 first: what a name like localhost usually means
    if (e.endpoint().address().is_v4()) return e.endpoint().address();
  }
  return found.begin()->endpoint().address();
}

// "host:port", with an IPv6 address in brackets.
std::string HostPort(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

StatusOr<std::uint16_t> FreePort(const std::string& bind) {
  asio::io_context io;
  TESSERA_ASSIGN_OR_RETURN(const auto address, BindAddress(bind));
  // The kernel's ephemeral range (Linux's default when it cannot be read).
  unsigned low = 32768;
  if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    unsigned lo = 0, hi = 0;
    if (std::fscanf(f, "%u %u", &lo, &hi) == 2 && lo > 1024 && lo <= 65535) low = lo;
    std::fclose(f);
  }
  const unsigned first = low > 10000 ? 10000 : 1025;
  std::random_device seed;
  std::mt19937 rng(seed());
  boost::system::error_code ec;
  for (int attempt = 0; attempt <= 64; ++attempt) {
    // 64 random ports below the ephemeral range, then port 0: the kernel's choice.
    const unsigned port = attempt < 64 && low > first ? first + rng() % (low - first) : 0;
    tcp::acceptor acceptor(io);
    tcp::endpoint ep(address, static_cast<std::uint16_t>(port));
    ec.clear();
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) return acceptor.local_endpoint().port();
    if (port == 0) break;
  }
  return Unavailable("cannot bind " + bind + ": " + ec.message());
}

TcpTransport::TcpTransport(const ProcessInfo& me, std::vector<int> process_of_rank)
    : me_(me), process_of_rank_(std::move(process_of_rank)) {}

StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(const ProcessInfo& me,
                                                             std::vector<int> process_of_rank,
                                                             const TcpOptions& options) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  if (me.size < 1 || me.rank < 0 || me.rank >= me.size) {
    return InvalidArgument("process " + std::to_string(me.rank) + " of " + std::to_string(me.size));
  }
  for (int p : process_of_rank) {
    if (p < 0 || p >= me.size) {
      return InvalidArgument("a rank is placed on process " + std::to_string(p) + " of " +
                             std::to_string(me.size));
    }
  }
  KeepMessageBuffersInHeap();
  std::unique_ptr<TcpTransport> t(new TcpTransport(me, std::move(process_of_rank)));
  t->impl_ = std::make_unique<Impl>(options, me.size);
  Impl& im = *t->impl_;
  im.early.resize(t->process_of_rank_.size());
  im.process_of_rank = t->process_of_rank_;
  for (std::size_t r = 0; r < t->process_of_rank_.size(); ++r) {
    im.boxes.push_back(t->hosts(static_cast<Rank>(r)) ? std::make_unique<Mailbox<Message>>()
                                                      : nullptr);
  }
  TESSERA_ASSIGN_OR_RETURN(im.bound, BindAddress(options.bind));
  // Process 0 listens on the rendezvous port; the others on the first free port of the range,
  // or on the kernel's choice.
  const bool ranged = me.rank != 0 && options.port_min != 0;
  const unsigned first = me.rank == 0 ? me.rendezvous_port : ranged ? options.port_min : 0;
  const unsigned last = ranged ? options.port_max : first;
  boost::system::error_code ec;
  for (unsigned port = first; port <= last; ++port) {
    if (im.acceptor.is_open()) im.acceptor.close(ec);
    const tcp::endpoint ep(im.bound, static_cast<std::uint16_t>(port));
    ec.clear();
    im.acceptor.open(ep.protocol(), ec);
    if (!ec) im.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) im.acceptor.bind(ep, ec);
    if (!ec) im.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) break;
  }
  if (ec) {
    return Unavailable("cannot listen on " + options.bind + ":" +
                       (ranged ? std::to_string(first) + "-" + std::to_string(last) +
                                     " (--port-range: every port is taken)"
                               : std::to_string(first)) +
                       ": " + ec.message());
  }
  t->listen_port_ = im.acceptor.local_endpoint().port();
  return t;
}

void TcpTransport::Flush(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (auto& c : impl_->conns) {
    if (!c) continue;
    while (Clock::now() < deadline && !impl_->has_failed.load()) {
      {
        std::unique_lock lock(c->mu);
        if (!c->writing && c->queue.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

TcpTransport::~TcpTransport() {
  if (!impl_) return;
  if (impl_->running.load()) Flush(std::chrono::milliseconds(5000));
  impl_->running.store(false);
  Close();
  impl_->io.stop();
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
}

Status TcpTransport::Establish() {
  Impl& im = *impl_;
  const auto deadline = Clock::now() + im.opts.connect_timeout;
  // The key of every MAC binds the run too: processes that differ in encrypt_frames, in the
  // number of processes or in the launcher's run id fail their handshakes.
  const std::string secret =
      im.opts.secret + std::string("\0", 1) + (im.opts.encrypt_frames ? "sealed" : "insecure") +
      "\0" + std::to_string(me_.size) + "\0" + me_.run_id + "\0" + im.opts.run_binding;
  const int P = me_.size;
  std::vector<std::string> addresses(static_cast<std::size_t>(P));
  addresses[0] = HostPort(me_.rendezvous_host, me_.rendezvous_port);
  im.acceptor.non_blocking(true);

  // One accepted connection's handshake, on a thread of its own so that silent or slow
  // connections do not hold up the others: the process it proved to be (-1 if none), why not,
  // and (at the rendezvous) where it listens.
  struct Handshake {
    std::unique_ptr<Impl::Connection> c;
    std::string who, why, address;
    int process = -1;
    std::atomic<bool> done{false};
    std::thread thread;
  };
  auto shake = [&](Handshake& h, auto&& wanted) {
    Impl::Connection& c = *h.c;
    // A peer gets 2 s to answer: a silent connection cannot hold a slot for long.
    const auto answer_by = std::min(deadline, Clock::now() + std::chrono::seconds(2));
    auto nonce = MakeNonce();
    if (!nonce.ok()) {
      h.why = nonce.status().message();
      return;
    }
    if (!WriteFrame(c.socket, EncodeChallenge(*nonce)).ok()) {
      h.why = "it closed before the challenge";
      return;
    }
    auto answer = ReadFrame(c.socket, kHandshakeFrameBytes, answer_by);
    if (!answer.ok()) {
      h.why = answer.status().message();
      return;
    }
    if (answer->kind != Frame::Kind::kResponse) {
      h.why = "it did not answer the challenge";
      return;
    }
    const int p = answer->rank;
    if (p < 0 || p >= P || p == me_.rank || !wanted(p)) {
      h.why = "it claims to be process " + std::to_string(p) + ", not expected here";
      return;
    }
    const std::string& peer_nonce = answer->nonce;
    if (peer_nonce.size() != kNonceBytes ||
        !SameMac(answer->mac, ConnectorMac(secret, *nonce, peer_nonce, p, me_.rank))) {
      h.why = "wrong secret (HMAC mismatch) for process " + std::to_string(p) +
              ", or a process of another run (or another command line or --insecure setting)";
      return;
    }
    if (!WriteFrame(c.socket, EncodeConfirm(AcceptorMac(secret, *nonce, peer_nonce, p, me_.rank)))
             .ok()) {
      h.why = "it closed before the confirmation";
      return;
    }
    auto keys = FrameCipher::ForConnection(secret, *nonce, peer_nonce, p, me_.rank, false,
                                           im.opts.encrypt_frames);
    if (!keys.ok()) {
      h.why = keys.status().message();
      return;
    }
    c.seal = std::move(keys->seal);
    c.open = std::move(keys->open);
    if (me_.rank == 0) {  // the rendezvous: the joining process says where it listens
      auto join = ReadFrame(c.socket, kHandshakeFrameBytes, answer_by, c.open.get());
      if (!join.ok() || join->kind != Frame::Kind::kJoin || join->rank != p) {
        h.why = "no Join after the handshake";
        return;
      }
      h.address = join->address;
    }
    h.process = p;
  };

  // Accepts until `count` connections from processes `wanted(process)` are authenticated;
  // keeps them by process. Up to kMaxHandshakes handshakes run at once; a connection beyond
  // them is closed at once.
  constexpr std::size_t kMaxHandshakes = 64;
  auto accept = [&](auto&& wanted, int count) -> Status {
    std::vector<std::unique_ptr<Handshake>> shaking;
    // Every handshake thread ends by its 2 s answer deadline: wait for them on any return.
    struct Joiner {
      std::vector<std::unique_ptr<Handshake>>& list;
      ~Joiner() {
        for (auto& h : list) h->thread.join();
      }
    } joiner{shaking};
    auto drop = [&](const std::string& who, const std::string& why) {
      std::cerr << "tessera: process " + std::to_string(me_.rank) + ": dropped a connection from " +
                       who + ": " + why + "\n"
                << std::flush;
    };
    int got = 0;
    while (got < count) {
      if (Clock::now() > deadline) {
        std::string missing;
        int num_missing = 0;
        for (int p = 0; p < P; ++p) {
          if (p != me_.rank && wanted(p) && !im.conns[static_cast<std::size_t>(p)]) {
            missing += (missing.empty() ? "" : ", ") + std::to_string(p);
            ++num_missing;
          }
        }
        return Unavailable("process " + std::to_string(me_.rank) + ": process" +
                           (num_missing > 1 ? "es " : " ") + missing + " did not connect within " +
                           std::to_string(im.opts.connect_timeout.count()) + " ms");
      }
      bool busy = false;
      for (auto it = shaking.begin(); it != shaking.end();) {
        Handshake& h = **it;
        if (!h.done.load()) {
          ++it;
          continue;
        }
        h.thread.join();
        busy = true;
        const int p = h.process;
        if (p < 0) {
          drop(h.who, h.why);
        } else if (im.conns[static_cast<std::size_t>(p)]) {
          drop(h.who, "process " + std::to_string(p) + " is already connected");
        } else {
          if (me_.rank == 0) addresses[static_cast<std::size_t>(p)] = h.address;
          h.c->process = p;
          im.conns[static_cast<std::size_t>(p)] = std::move(h.c);
          ++got;
        }
        it = shaking.erase(it);
      }
      auto c = std::make_unique<Impl::Connection>(im.io, im.opts.max_frame_bytes);
      boost::system::error_code ec;
      im.acceptor.accept(c->socket, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (ec) return Unavailable("accept failed: " + ec.message());
      if (shaking.size() >= kMaxHandshakes) {
        drop(Peer(c->socket), std::to_string(kMaxHandshakes) + " handshakes under way already");
        continue;
      }
      c->socket.non_blocking(false);
      auto h = std::make_unique<Handshake>();
      h->who = Peer(c->socket);
      h->c = std::move(c);
      Handshake* raw = h.get();
      h->thread = std::thread([&shake, &wanted, raw] {
        shake(*raw, wanted);
        raw->done.store(true);
      });
      shaking.push_back(std::move(h));
    }
    return Status::Ok();
  };

  // Connects to `address` as this process, retrying until the deadline.
  auto connect = [&](int p,
                     const std::string& address) -> StatusOr<std::unique_ptr<Impl::Connection>> {
    std::string host;
    std::uint16_t port = 0;
    TESSERA_RETURN_IF_ERROR(
        ParseHostPort(address, "address of process " + std::to_string(p), host, port));
    tcp::resolver resolver(im.io);
    std::string last = "no attempt";
    while (Clock::now() < deadline) {
      boost::system::error_code ec;
      auto endpoints = resolver.resolve(host, std::to_string(port), ec);
      auto c = std::make_unique<Impl::Connection>(im.io, im.opts.max_frame_bytes);
      if (!ec) asio::connect(c->socket, endpoints, ec);
      if (ec) {
        last = ec.message();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      auto challenge = ReadFrame(c->socket, kHandshakeFrameBytes, deadline);
      if (!challenge.ok())
        return Unavailable("process " + std::to_string(p) + " at " + address +
                           ": no challenge: " + challenge.status().message());
      if (challenge->kind != Frame::Kind::kChallenge || challenge->nonce.size() != kNonceBytes) {
        return Unavailable("process " + std::to_string(p) + " at " + address +
                           ": sent something else than a challenge");
      }
      const std::string& nonce_a = challenge->nonce;
      TESSERA_ASSIGN_OR_RETURN(const std::string nonce_c, MakeNonce());
      TESSERA_RETURN_IF_ERROR(WriteFrame(
          c->socket,
          EncodeResponse(me_.rank, nonce_c, ConnectorMac(secret, nonce_a, nonce_c, me_.rank, p))));
      // The acceptor proves it holds the secret too: a listener that only relays or imitates
      // the challenge gets no further.
      auto confirm = ReadFrame(c->socket, kHandshakeFrameBytes, deadline);
      if (!confirm.ok() || confirm->kind != Frame::Kind::kConfirm ||
          !SameMac(confirm->mac, AcceptorMac(secret, nonce_a, nonce_c, me_.rank, p))) {
        return Unavailable("process " + std::to_string(p) + " at " + address +
                           " did not prove it holds the secret (" +
                           (confirm.ok()
                                ? std::string("a wrong confirmation")
                                : confirm.status().message() +
                                      ": is it a process of this run, with the same secret, "
                                      "command line and --insecure setting?") +
                           ")");
      }
      TESSERA_ASSIGN_OR_RETURN(
          auto keys, FrameCipher::ForConnection(secret, nonce_a, nonce_c, me_.rank, p, true,
                                                im.opts.encrypt_frames));
      c->seal = std::move(keys.seal);
      c->open = std::move(keys.open);
      c->process = p;
      return c;
    }
    return Unavailable("process " + std::to_string(me_.rank) + ": cannot connect to process " +
                       std::to_string(p) + " at " + address + " within " +
                       std::to_string(im.opts.connect_timeout.count()) + " ms (" + last + ")");
  };

  // What this process tells its peers to dial (see TcpOptions::advertise).
  auto own = [&](const tcp::socket* to_rendezvous) {
    if (!im.opts.advertise.empty()) return HostPort(im.opts.advertise, listen_port_);
    if (!im.bound.is_unspecified()) return HostPort(im.bound.to_string(), listen_port_);
    if (!to_rendezvous) return HostPort(me_.rendezvous_host, listen_port_);
    boost::system::error_code ec;
    const auto local = to_rendezvous->local_endpoint(ec);
    if (ec) return HostPort(me_.rendezvous_host, listen_port_);
    auto address = local.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    }
    return HostPort(address.to_string(), listen_port_);
  };
  if (me_.rank == 0) {
    if (Status joined = accept([](int) { return true; }, P - 1); !joined.ok()) {
      // Those that joined learn why the set-up ends instead of waiting for their own timeout.
      for (auto& c : im.conns) {
        if (c) (void)WriteFrame(c->socket, EncodeGoodbye(joined.message()), c->seal.get());
      }
      return joined;
    }
    advertised_ = addresses[0] = own(nullptr);
    for (int p = 1; p < P; ++p) {
      auto& c = *im.conns[static_cast<std::size_t>(p)];
      TESSERA_RETURN_IF_ERROR(WriteFrame(c.socket, EncodePeers(addresses), c.seal.get()));
    }
  } else {
    TESSERA_ASSIGN_OR_RETURN(auto c0, connect(0, addresses[0]));
    advertised_ = own(&c0->socket);
    TESSERA_RETURN_IF_ERROR(
        WriteFrame(c0->socket, EncodeJoin(me_.rank, advertised_), c0->seal.get()));
    // The peer table: an address (at most a host name and a port) per process.
    const auto table_bytes = std::min<std::uint32_t>(im.opts.max_frame_bytes,
                                                     1024 + 320 * static_cast<std::uint32_t>(P));
    // Process 0 sends the table, or why the set-up ends, by the same deadline: a little more
    // time lets its word arrive.
    auto peers =
        ReadFrame(c0->socket, table_bytes, deadline + std::chrono::seconds(2), c0->open.get());
    if (!peers.ok()) {
      return Unavailable("process " + std::to_string(me_.rank) +
                         ": no peer table from process 0: " + peers.status().message());
    }
    if (peers->kind == Frame::Kind::kGoodbye) {
      return Unavailable("process " + std::to_string(me_.rank) +
                         ": process 0 ended the set-up: " + peers->reason);
    }
    if (peers->kind != Frame::Kind::kPeers || peers->peers.size() != static_cast<std::size_t>(P)) {
      return Unavailable("process 0 sent a bad peer table");
    }
    addresses = peers->peers;
    im.conns[0] = std::move(c0);
    for (int j = 1; j < me_.rank; ++j) {
      TESSERA_ASSIGN_OR_RETURN(im.conns[static_cast<std::size_t>(j)],
                               connect(j, addresses[static_cast<std::size_t>(j)]));
    }
    const int me = me_.rank;
    TESSERA_RETURN_IF_ERROR(accept([me](int p) { return p > me; }, P - 1 - me));
  }
  boost::system::error_code ec;
  im.acceptor.close(ec);
  const auto now = Clock::now().time_since_epoch().count();
  for (auto& c : im.conns) {
    if (!c) continue;
    c->socket.set_option(tcp::no_delay(true), ec);
    c->last_heard.store(now);
  }
  im.running.store(true);
  for (auto& c : im.conns) {
    if (c) im.StartRead(*c);
  }
  im.Beat();
  im.io_thread = std::thread([&im] {
    auto guard = asio::make_work_guard(im.io);
    im.io.run();
  });
  return Status::Ok();
}

Status TcpTransport::Send(Rank to, Message msg) {
  if (to < 0 || to >= size()) {
    return InvalidArgument("send to rank " + std::to_string(to) + " of " + std::to_string(size()));
  }
  Impl& im = *impl_;
  if (im.has_failed.load()) return im.Failure();
  im.payload_bytes.fetch_add(msg.PayloadBytes(), std::memory_order_relaxed);
  msg.to = to;
  msg.run = im.run.load(std::memory_order_relaxed);
  if (hosts(to)) {
    if (!im.boxes[static_cast<std::size_t>(to)]->Push(std::move(msg))) {
      return Unavailable("transport closed");
    }
    return Status::Ok();
  }
  const int p = process_of_rank_[static_cast<std::size_t>(to)];
  auto& c = im.conns[static_cast<std::size_t>(p)];
  if (!c || !im.running.load()) return FailedPrecondition("the TCP transport is not established");
  if (c->left.load()) {
    return FailedPrecondition("rank " + std::to_string(to) + ": process " + std::to_string(p) +
                              " has finished and left");
  }
  return im.Enqueue(*c, EncodeFramedMessages({&msg, 1}));
}

StatusOr<Message> TcpTransport::Receive(Rank self) {
  TESSERA_CHECK(self >= 0 && self < size() && hosts(self)) << "rank " << self << " is not here";
  return PopMessage(*impl_->boxes[static_cast<std::size_t>(self)], /*wait=*/true,
                    [this] { return ClosedStatus(); });
}

StatusOr<Message> TcpTransport::TryReceive(Rank self) {
  TESSERA_CHECK(self >= 0 && self < size() && hosts(self)) << "rank " << self << " is not here";
  return PopMessage(*impl_->boxes[static_cast<std::size_t>(self)], /*wait=*/false,
                    [this] { return ClosedStatus(); });
}

void TcpTransport::BeginRun() {
  Impl& im = *impl_;
  std::lock_guard lock(im.run_mu);
  const std::uint64_t run = im.run.fetch_add(1) + 1;
  for (std::size_t r = 0; r < im.boxes.size(); ++r) {
    if (!im.boxes[r]) continue;
    Message m;
    while (im.boxes[r]->TryPop(m) == Mailbox<Message>::TryResult::kItem) {
    }  // left over from earlier runs
    std::vector<Message> later;
    for (Message& e : im.early[r]) {
      if (e.run == run) {
        im.boxes[r]->Push(std::move(e));
      } else if (e.run > run) {
        later.push_back(std::move(e));
      }
    }
    im.early[r] = std::move(later);
  }
}

void TcpTransport::Close() {
  for (auto& b : impl_->boxes) {
    if (b) b->Close();
  }
}

std::uint64_t TcpTransport::bytes_sent() const {
  return impl_->payload_bytes.load(std::memory_order_relaxed);
}

std::uint64_t TcpTransport::wire_bytes_sent() const {
  return impl_->wire_bytes.load(std::memory_order_relaxed);
}

Status TcpTransport::failure() const { return impl_->Failure(); }

int TcpTransport::peers_left() const {
  std::lock_guard lock(impl_->left_mu);
  return impl_->peers_left;
}

Status TcpTransport::Leave(const std::string& reason) {
  Impl& im = *impl_;
  if (!im.running.load()) return FailedPrecondition("the TCP transport is not established");
  if (im.leaving.exchange(true)) return FailedPrecondition("Leave called twice");
  Flush(std::chrono::milliseconds(5000));
  std::string bye;
  AppendFrame(bye, EncodeGoodbye(reason));
  int peers = 0;
  for (auto& c : im.conns) {
    if (!c) continue;
    ++peers;
    std::unique_lock lock(c->mu);
    im.QueueLocked(*c, c->Sealed(bye));
  }
  Flush(std::chrono::milliseconds(5000));
  if (!reason.empty()) return Status::Ok();
  std::unique_lock lock(im.left_mu);
  im.left_cv.wait(lock, [&] { return im.has_failed.load() || im.peers_left == peers; });
  return im.has_failed.load() ? im.Failure() : Status::Ok();
}

Status TcpTransport::ClosedStatus() const {
  Status f = impl_->Failure();
  return f.ok() ? Unavailable("transport closed") : f;
}

}  // namespace tessera::net
