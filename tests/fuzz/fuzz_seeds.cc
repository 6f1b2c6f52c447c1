// Writes the seed corpora of the fuzz targets: `fuzz_seeds DIR` fills DIR/<target>/ with
// valid inputs (every frame kind, a checkpoint, a small file of every reader's format, the
// model files, option values), from which libFuzzer mutates. scripts/fuzz.sh runs it before
// fuzzing.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/algorithms/mf/mf.h"
#include "tessera/core/checkpoint.h"
#include "tessera/net/codec.h"

namespace {

void Write(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string Framed(const std::string& body) {
  std::string out;
  tessera::net::AppendFrame(out, body);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tessera;
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const auto frames = root / "fuzz_frame";
  msg::PsPush push_body;
  push_body.table = 1;
  push_body.keys = {1, 5, 9};
  push_body.values = Eigen::VectorXd::LinSpaced(3, 0.5, 1.5);
  Message push(3, push_body);
  push.to = 1;
  msg::Partials partials_body;
  partials_body.round = 7;
  partials_body.partials.push_back({2, 1, Eigen::VectorXd::Ones(4)});
  const Message partials(1, partials_body);
  msg::Push schedule_body;
  schedule_body.blocks.push_back({1, {0, 1, 2}, -1});
  schedule_body.stale_keys = {8};
  schedule_body.committed = Committed{3, {{4, 2}, Eigen::VectorXd::Constant(2, -0.25)}};
  const Message schedule(0, schedule_body);
  msg::PsPull pull_body;
  pull_body.range = {10, 20};
  pull_body.request = 42;
  const Message pull(3, pull_body);
  Write(frames, "push", net::EncodeFramedMessages({&push, 1}));
  Write(frames, "partials", net::EncodeFramedMessages({&partials, 1}));
  Write(frames, "schedule", net::EncodeFramedMessages({&schedule, 1}));
  std::vector<Message> batch = {push, pull};
  Write(frames, "batch", net::EncodeFramedMessages(batch));
  Write(frames, "heartbeat", Framed(net::EncodeHeartbeat(12)));
  Write(frames, "challenge", Framed(net::EncodeChallenge(std::string(32, 'n'))));
  Write(frames, "response",
        Framed(net::EncodeResponse(2, std::string(32, 'n'), std::string(32, 'm'))));
  Write(frames, "confirm", Framed(net::EncodeConfirm(std::string(32, 'm'))));
  Write(frames, "join", Framed(net::EncodeJoin(1, "127.0.0.1:4000")));
  Write(frames, "peers", Framed(net::EncodePeers({"127.0.0.1:1", "127.0.0.1:2"})));
  Write(frames, "goodbye", Framed(net::EncodeGoodbye("lost process 2")));

  Checkpoint c;
  c.PutText("app", "lasso");
  c.PutU64("done", 1);
  c.PutDoubles("beta", std::vector<double>{0.5, 0, -1});
  c.PutDoubles("lambdas", std::vector<double>{2, 1});
  Write(root / "fuzz_checkpoint", "lasso", c.Encode());

  // fuzz_readers: the first byte picks the reader (0 LIBSVM, 1 CSV, 2 ratings, 3 UCI bag of
  // words, 4 LIBSVM counts, 5 text).
  const auto readers = root / "fuzz_readers";
  Write(readers, "libsvm", std::string(1, '\0') + "1.5 1:0.5 3:-2\n-1 2:1e-3 4:7\n0 1:1\n");
  Write(readers, "csv", std::string(1, '\1') + "a,b,y\n1,2,3\n4,5.5,-6\n0,0,1e2\n");
  Write(readers, "ratings", std::string(1, '\2') + "u1 i1 4\nu2 i1 3.5 881250949\nu1 i2 1\n");
  Write(readers, "uci", std::string(1, '\3') + "2\n4\n3\n1 1 2\n1 3 1\n2 4 5\n");
  Write(readers, "counts", std::string(1, '\4') + "0 1:2 3:1\n1 2:4\n");
  Write(readers, "text", std::string(1, '\5') + "the cat sat\non the mat\n");

  // fuzz_models: the first byte picks the reader (even: MF, odd: LDA); the models are written
  // by the trainers' own writers.
  const auto models = root / "fuzz_models";
  const std::filesystem::path scratch = root / "scratch";
  std::filesystem::create_directories(scratch);
  MfModel mf;
  mf.mean = 3.5;
  mf.users = std::make_shared<IdMap>();
  mf.items = std::make_shared<IdMap>();
  for (const char* u : {"u1", "u2"}) mf.users->Add(u);
  for (const char* i : {"i1", "i2", "i3"}) mf.items->Add(i);
  mf.w = Eigen::MatrixXd::Constant(2, 2, 0.25);
  mf.h = Eigen::MatrixXd::Constant(3, 2, -0.5);
  LdaModel lda;
  lda.topics = 2;
  lda.alpha = 0.1;
  lda.beta = 0.01;
  lda.vocab = {"cat", "mat", "sat"};
  lda.word_ptr = {0, 1, 2, 4};  // cat 0:3, mat 1:2, sat 0:1 1:1
  lda.word_topic = {0, 1, 0, 1};
  lda.word_count = {3, 2, 1, 1};
  lda.topic_total = {4, 3};
  lda.doc_ptr = {0, 2, 3};
  lda.doc_topic = {0, 1, 1};
  lda.doc_count = {4, 1, 2};
  if (!WriteMfModel((scratch / "mf").string(), mf).ok() ||
      !WriteLdaModel((scratch / "lda").string(), lda).ok()) {
    std::fprintf(stderr, "fuzz_seeds: could not write the model seeds\n");
    return 1;
  }
  for (const auto& [name, tag] : {std::pair{"mf", '\0'}, std::pair{"lda", '\1'}}) {
    std::ifstream in(scratch / name, std::ios::binary);
    Write(models, name, std::string(1, tag) + std::string(std::istreambuf_iterator<char>(in), {}));
  }
  std::filesystem::remove_all(scratch);

  // fuzz_options: newline-separated duration, consistency, frequency, partition, host:port,
  // then TESSERA_RANK, _SIZE, _RENDEZVOUS, _LOCAL_SIZE.
  const auto options = root / "fuzz_options";
  Write(options, "valid",
        "30s\nssp:2\nn-batches:4\ndisjoint_random\n[::1]:7070\n1\n3\n"
        "127.0.0.1:7411\n2\n");
  Write(options, "other", "1.5m\neager_ssp:1\nepoch\noverlap_reshuffle\nhost0:1\n0\n1\n\n1\n");

  // fuzz_shard: frames of messages from the workers (ranks 3 and 4; shards 1 and 2, `to` 0 or
  // 1 picks the shard) to tables 0 (10 keys x 2, asp), 1 (1000 sparse keys, ssp:1), 2
  // (6 keys, bsp, averaged) and 3 (50 keys x 8 kept as nonzeros, ssp:1).
  const auto shard = root / "fuzz_shard";
  std::vector<Message> session;
  for (int w = 3; w <= 4; ++w) {
    const auto add = [&](int to, auto body) {
      Message m(w, std::move(body));
      m.to = to;
      session.push_back(std::move(m));
    };
    msg::PsPush p;
    p.keys = {1, 3};
    p.values = Eigen::VectorXd::Constant(4, 0.5);
    add(0, p);
    p.table = 1;
    p.keys = {600, 999};
    p.values = Eigen::VectorXd::Constant(2, -1.0);
    add(1, p);
    msg::PsPull q;
    q.table = 1;
    q.keys = {600, 999};
    q.request = 7;
    q.clock = 1;
    add(1, q);
    add(0, msg::PsClock{1});
    q.table = 2;
    q.keys.clear();
    q.range = {0, 3};
    q.request = 8;
    add(0, q);
    add(0, msg::PsPing{9});
    msg::PsPush e;  // nonzeros of two keys (positions i * 8 + element), as sent
    e.table = 3;
    e.keys = w == 3 ? std::vector<Key>{2, 20} : std::vector<Key>{30, 40};
    e.values = Eigen::Vector3d(1.0, -2.0, 3.0);
    e.packed.sparse = true;
    e.packed.size = 16;
    e.packed.nonzero = {0, 5, 9};
    add(w == 3 ? 0 : 1, e);
    q.table = 3;
    q.range = w == 3 ? KeyRange{0, 25} : KeyRange{25, 50};
    q.request = 10;
    add(w == 3 ? 0 : 1, q);
  }
  std::string frames_of_session;
  for (const Message& m : session) frames_of_session += net::EncodeFramedMessages({&m, 1});
  Write(shard, "session", frames_of_session);
  Write(shard, "batch", net::EncodeFramedMessages(session));
  return 0;
}
