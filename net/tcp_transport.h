// The Transport between processes: TCP on Boost.Asio, frames of net/codec.h, one connection
// per pair of processes, every connection authenticated (net/auth.h) before anything else is
// read from it.
//
// Ranks (the engines' endpoints) are spread over processes by `process_of_rank`; a message to
// a rank of this process goes straight to its mailbox, any other is encoded and queued on the
// connection to its process. Setting up (Establish):
//   process 0   listens on the rendezvous port; every other process connects, answers the
//               challenge and sends Join{index, its listen address}; once all have joined,
//               process 0 sends each the table of addresses (Peers). Connections that fail
//               the handshake are logged and dropped; process 0 keeps waiting for the rest.
//   process i   after the rendezvous, connects to every process 1 <= j < i (answering j's
//               challenge) and accepts from every k > i (challenging k).
// Running: one I/O thread reads every connection (frames are decoded there and pushed to the
// receiving rank's mailbox) and writes the send queues, concatenating what has queued up
// (small messages batch themselves). A sender whose queue to a process holds more than
// max_queued_bytes waits, parking its fiber, not its thread. Every connection carries a
// heartbeat each heartbeat_every; a process silent for silence_timeout, a closed connection,
// or a bad frame fails the transport: every receiver gets the error naming the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/transport.h"
#include "tessera/net/codec.h"
#include "tessera/net/process_env.h"

namespace tessera::net {

struct TcpOptions {
  // The address or host name this process listens on; 0.0.0.0 or :: listen on every interface.
  std::string bind = "127.0.0.1";
  // What this process tells its peers to dial. Empty: the bound address, or, when that is
  // 0.0.0.0 or ::, the local address of this process's connection to process 0 (the interface
  // its peers reach it through; process 0 advertises the rendezvous host).
  std::string advertise;
  // The ports this process's listener may take (processes other than 0, which listens on the
  // rendezvous port): the first free one from port_min. 0, 0: the kernel's choice.
  std::uint16_t port_min = 0, port_max = 0;
  std::string secret;  // shared secret (>= 16 bytes)
  // What the processes of one run must agree on besides the secret (e.g. the command line);
  // bound into every handshake's MAC: processes that differ refuse each other.
  std::string run_binding;
  std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  // Every frame after the handshake is authenticated (net/auth.h): one altered, injected,
  // replayed, reordered or dropped fails the run. With this on it is also encrypted; off
  // (--insecure) anyone on the path may read it: for a network no one else can listen on.
  // Every process must use the same setting; the handshake of two that differ fails.
  bool encrypt_frames = true;
  std::chrono::milliseconds connect_timeout{20000};  // for the whole set-up
  std::chrono::milliseconds heartbeat_every{500};
  std::chrono::milliseconds silence_timeout{10000};
  std::size_t max_queued_bytes = 64u << 20;  // per connection; senders wait beyond this
  Status Validate() const;
};

// A TCP port on `bind` that is free now, released again for the caller to bind (another
// process could take it in between). For rendezvous ports: drawn at random below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), from which every outgoing connection takes
// its local port and which a port the kernel chose would share; the kernel's choice only when
// no port below that range is free.
StatusOr<std::uint16_t> FreePort(const std::string& bind = "127.0.0.1");

class TcpTransport final : public Transport {
 public:
  // Process me.rank of me.size. Binds this process's listener (process 0: on the rendezvous
  // port, which may be 0 for "any": see listen_port()) and starts the I/O thread.
  static StatusOr<std::unique_ptr<TcpTransport>> Create(const ProcessInfo& me,
                                                        std::vector<int> process_of_rank,
                                                        const TcpOptions& options);
  ~TcpTransport() override;

  std::uint16_t listen_port() const { return listen_port_; }
  // "host:port" this process gives its peers (set by Establish).
  const std::string& advertised() const { return advertised_; }
  // Connects every pair of processes (see above); an error after connect_timeout says which
  // process is missing.
  Status Establish();
  bool hosts(Rank r) const override {
    return process_of_rank_[static_cast<std::size_t>(r)] == me_.rank;
  }
  // Waits until every queued byte has been handed to the kernel (or `timeout`); the destructor
  // does this so a last message (an engine's stop) is not lost.
  void Flush(std::chrono::milliseconds timeout);
  // Leaves the run: sends what is queued, then a Goodbye to every peer. With an empty `reason`
  // (a clean finish) it then waits until every peer has said goodbye too, so that no process
  // closes a connection another still reads; heartbeats and the silence timeout keep watching
  // the peers still running, so a peer lost meanwhile ends the wait with its error. A
  // non-empty reason is the error this process fails with: its peers fail with "process i
  // failed: reason" instead of a bare lost connection; it does not wait. Without Leave, the
  // destructor just closes the connections, which the peers report as a lost process.
  Status Leave(const std::string& reason = "");

  int size() const override { return static_cast<int>(process_of_rank_.size()); }
  Status Send(Rank to, Message msg) override;
  StatusOr<Message> Receive(Rank self) override;
  StatusOr<Message> TryReceive(Rank self) override;
  void Close() override;
  std::uint64_t bytes_sent() const override;
  bool in_process() const override { return false; }
  // Every message carries its sender's run; the I/O thread drops those of runs this process
  // has finished and holds those of runs it has not begun until it begins them.
  void BeginRun() override;
  // Bytes written to sockets so far (frames, headers and heartbeats included).
  std::uint64_t wire_bytes_sent() const;
  // The error that failed the transport, or Ok.
  Status failure() const;
  // The number of peers that have left cleanly.
  int peers_left() const;

 private:
  struct Impl;
  TcpTransport(const ProcessInfo& me, std::vector<int> process_of_rank);
  std::string advertised_;
  // What a receiver gets once its mailbox is closed and drained: the failure, if any.
  Status ClosedStatus() const;
  ProcessInfo me_;
  std::vector<int> process_of_rank_;
  std::uint16_t listen_port_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::net
