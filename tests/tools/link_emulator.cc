// A slow, lossy link for the two-host test where the kernel has no `tc netem`: run inside a
// network namespace, it takes the packets that an iptables rule sends to NFQUEUE queue
// --queue, drops each with probability --loss and lets the others through --delay-ms
// (± --jitter-ms, uniform) after they arrived, in arrival order, as netem's delay and loss do.
// Runs until SIGTERM or SIGINT, then lets every held packet through. The rule should carry
// --queue-bypass so that packets pass while no emulator listens.
//
//   link_emulator --queue 7 --delay-ms 2 --jitter-ms 1 --loss 0.01 [--seed 1]
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t stop = 0;
void OnSignal(int) { stop = 1; }

struct Held {
  std::uint32_t id;
  Clock::time_point release;
};

struct Link {
  nfq_q_handle* queue = nullptr;
  double loss = 0;
  Clock::duration delay{}, jitter{};
  std::mt19937_64 rng;
  std::deque<Held> held;  // release times never decrease: packets leave in arrival order
  std::uint64_t seen = 0, dropped = 0;
};

int OnPacket(nfq_q_handle* q, nfgenmsg*, nfq_data* data, void* arg) {
  auto* link = static_cast<Link*>(arg);
  const nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(data);
  if (!header) return 0;
  const std::uint32_t id = ntohl(header->packet_id);
  ++link->seen;
  std::uniform_real_distribution<double> u(0, 1);
  if (u(link->rng) < link->loss) {
    ++link->dropped;
    return nfq_set_verdict(q, id, NF_DROP, 0, nullptr);
  }
  const auto spread =
      std::chrono::duration_cast<Clock::duration>(link->jitter * (2 * u(link->rng) - 1));
  Clock::time_point release = Clock::now() + link->delay + spread;
  if (!link->held.empty()) release = std::max(release, link->held.back().release);
  link->held.push_back({id, release});
  return 0;
}

// Lets through every held packet whose time has come (all of them when `all`).
void Release(Link& link, bool all) {
  const Clock::time_point now = Clock::now();
  while (!link.held.empty() && (all || link.held.front().release <= now)) {
    nfq_set_verdict(link.queue, link.held.front().id, NF_ACCEPT, 0, nullptr);
    link.held.pop_front();
  }
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "link_emulator: %s\nusage: link_emulator --queue N --delay-ms D [--jitter-ms J] "
               "[--loss P] [--seed S]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Link link;
  int queue_number = -1;
  double delay_ms = 0, jitter_ms = 0;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(("no value after " + flag).c_str());
    char* end = nullptr;
    const char* value = argv[++i];
    const double v = std::strtod(value, &end);
    if (end == value || *end != '\0' || !(v >= 0)) {
      return Usage((flag + ": not a non-negative number: " + value).c_str());
    }
    if (flag == "--queue") {
      queue_number = static_cast<int>(v);
    } else if (flag == "--delay-ms") {
      delay_ms = v;
    } else if (flag == "--jitter-ms") {
      jitter_ms = v;
    } else if (flag == "--loss") {
      if (v > 1) return Usage("--loss is a probability");
      link.loss = v;
    } else if (flag == "--seed") {
      seed = static_cast<std::uint64_t>(v);
    } else {
      return Usage(("unknown flag " + flag).c_str());
    }
  }
  if (queue_number < 0 || queue_number > 65535) return Usage("--queue 0..65535 is required");
  if (jitter_ms > delay_ms) return Usage("--jitter-ms must not exceed --delay-ms");
  link.delay = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(delay_ms));
  link.jitter = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(jitter_ms));
  link.rng.seed(seed);

  nfq_handle* h = nfq_open();
  if (!h) return std::perror("link_emulator: nfq_open"), 1;
  link.queue = nfq_create_queue(h, static_cast<std::uint16_t>(queue_number), &OnPacket, &link);
  if (!link.queue) return std::perror("link_emulator: nfq_create_queue"), 1;
  // Only the packet's metadata comes up: the verdict needs its id, not its bytes.
  if (nfq_set_mode(link.queue, NFQNL_COPY_META, 0) < 0) {
    return std::perror("link_emulator: nfq_set_mode"), 1;
  }
  nfq_set_queue_maxlen(link.queue, 1 << 16);
  const int fd = nfq_fd(h);
  int bufsize = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::printf("link_emulator: queue %d, delay %g ms ± %g ms, loss %g\n", queue_number, delay_ms,
              jitter_ms, link.loss);
  std::fflush(stdout);

  alignas(8) char buf[1 << 16];
  while (!stop) {
    int timeout_ms = 100;
    if (!link.held.empty()) {
      const auto wait = link.held.front().release - Clock::now();
      timeout_ms = static_cast<int>(std::clamp<long long>(
          std::chrono::duration_cast<std::chrono::microseconds>(wait).count() / 1000, 0, 100));
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) return std::perror("link_emulator: poll"), 1;
    if (ready > 0) {
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        nfq_handle_packet(h, buf, static_cast<int>(n));
      } else if (n < 0 && errno == ENOBUFS) {
        std::fprintf(stderr, "link_emulator: kernel queue overflowed; packets were lost\n");
      }
    }
    Release(link, false);
  }
  Release(link, true);
  std::printf("link_emulator: %llu packets, %llu dropped\n",
              static_cast<unsigned long long>(link.seen),
              static_cast<unsigned long long>(link.dropped));
  nfq_destroy_queue(link.queue);
  nfq_close(h);
  return 0;
}
