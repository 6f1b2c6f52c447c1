// Checkpoint files: what is written reads back exactly; a truncated, corrupt or foreign file
// is a clear error; a directory resumes from its newest whole checkpoint.
#include "tessera/core/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tessera/core/metrics.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

Checkpoint Sample(double scale) {
  Checkpoint c;
  c.PutText("app", "lasso");
  c.PutU64("round", 17);
  c.PutDoubles("beta", std::vector<double>{1.5 * scale, -0.0, 1e-300, -2.25});
  c.PutDouble("lambda", 0.125);
  c.PutU64s("empty", {});
  return c;
}

TEST(CheckpointTest, RoundTripsEverySection) {
  auto back = Checkpoint::Decode(Sample(1).Encode(), "mem");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back->Text("app"), "lasso");
  EXPECT_EQ(*back->U64("round"), 17u);
  EXPECT_EQ(*back->Double("lambda"), 0.125);
  EXPECT_EQ(*back->Doubles("beta"), (std::vector<double>{1.5, -0.0, 1e-300, -2.25}));
  EXPECT_TRUE(back->U64s("empty")->empty());
  EXPECT_THAT(back->Doubles("missing").status().message(), HasSubstr("mem: no section 'missing'"));
  EXPECT_THAT(back->Doubles("app").status().message(),
              HasSubstr("section 'app' holds text, not numbers"));
  EXPECT_THAT(back->U64("empty").status().message(), HasSubstr("has 0 integers, not 1"));
}

TEST(CheckpointTest, EveryTruncationAndEveryFlippedByteIsRejected) {
  const std::string good = Sample(1).Encode();
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = Checkpoint::Decode(good.substr(0, n), "ckpt");
    ASSERT_FALSE(r.ok()) << "truncated to " << n;
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    ASSERT_FALSE(Checkpoint::Decode(bad, "ckpt").ok()) << "byte " << i;
  }
  EXPECT_THAT(Checkpoint::Decode(good.substr(0, good.size() - 3), "c.tck").status().message(),
              HasSubstr("c.tck: truncated"));
  std::string flipped = good;
  flipped[40] ^= 1;
  EXPECT_THAT(Checkpoint::Decode(flipped, "c.tck").status().message(),
              HasSubstr("c.tck: checksum mismatch"));
  EXPECT_THAT(Checkpoint::Decode("lambda,beta\n1,2\n", "x.csv").status().message(),
              HasSubstr("x.csv: not a Tessera checkpoint"));
}

TEST(CheckpointTest, AnotherVersionIsNamed) {
  std::string bytes = Sample(1).Encode();
  bytes[13] = 2;  // the version, right after the magic
  const std::uint64_t body = bytes.size() - 12;
  const std::uint32_t crc = Crc32c(std::string_view(bytes.data(), body));
  std::memcpy(bytes.data() + body + 8, &crc, 4);
  EXPECT_THAT(Checkpoint::Decode(bytes, "v2").status().message(),
              HasSubstr("format version 2; this build reads version 1"));
}

TEST(CheckpointTest, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c("6789", Crc32c("12345")), 0xE3069283u);
}

TEST(CheckpointTest, ADirectoryResumesFromItsNewestWholeCheckpoint) {
  testing::TempDir tmp;
  const std::string dir = tmp.Path("ck");
  auto d = CheckpointDir::Open(dir, 3);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->LoadLatest().status().code(), StatusCode::kNotFound);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(d->Save(Sample(i)).ok());
  auto files = d->Files();
  ASSERT_EQ(files.size(), 3u);  // the oldest two are gone
  EXPECT_THAT(files.back(), HasSubstr("ckpt-00000005.tck"));
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
  EXPECT_EQ((*d->LoadLatest()->Doubles("beta"))[0], 1.5 * 5);

  // The newest is cut short (a crash of the machine mid-write without the rename would leave
  // only a .tmp; this is worse): the one before it is used, and the skipped one is named.
  std::filesystem::resize_file(files.back(), 30);
  std::vector<std::string> skipped;
  auto latest = d->LoadLatest(&skipped);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ((*latest->Doubles("beta"))[0], 1.5 * 4);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], HasSubstr("ckpt-00000005.tck: truncated"));

  // A reopened directory numbers on from the newest file.
  auto again = CheckpointDir::Open(dir, 3);
  ASSERT_TRUE(again.ok());
  auto path = again->Save(Sample(6));
  ASSERT_TRUE(path.ok());
  EXPECT_THAT(*path, HasSubstr("ckpt-00000006.tck"));
  EXPECT_EQ((*again->LoadLatest()->Doubles("beta"))[0], 1.5 * 6);

  // Every file corrupt: an error that says so.
  for (const auto& f : again->Files()) std::ofstream(f, std::ios::trunc) << "TESSERA-CKPT\nxx";
  EXPECT_THAT(again->LoadLatest().status().message(), HasSubstr("no checkpoint that reads back"));
  EXPECT_THAT(CheckpointDir::Open(tmp.File("plain", "x"), 3).status().message(),
              HasSubstr("cannot use as the checkpoint directory"));
}

// Atomic writes go through a fresh mkstemp name beside the target: a symlink planted where a
// fixed temporary name would be (`out.csv.tmp` -> a victim file) is never followed.
TEST(CheckpointTest, AtomicWritesNeverFollowAPlantedTemporaryName) {
  testing::TempDir tmp;
  const std::string victim = tmp.File("victim.txt", "precious\n");
  const std::string csv = tmp.Path("out.csv"), ck = tmp.Path("c.tck");
  std::filesystem::create_symlink(victim, csv + ".tmp");
  std::filesystem::create_symlink(victim, ck + ".tmp");
  CsvWriter out;
  ASSERT_TRUE(out.Open(csv, "a,b").ok());
  out.Row("1,2");
  ASSERT_TRUE(out.Finish().ok());
  ASSERT_TRUE(Sample(1).Write(ck).ok());
  std::ifstream v(victim);
  std::string line;
  std::getline(v, line);
  EXPECT_EQ(line, "precious");
  std::ifstream c(csv);
  std::getline(c, line);
  EXPECT_EQ(line, "a,b");
  EXPECT_TRUE(Checkpoint::Read(ck).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(csv + ".tmp"));
  EXPECT_TRUE(tmp.NoTempFiles());
  // An unwritable directory is an error naming the target, as before.
  CsvWriter nowhere;
  EXPECT_THAT(nowhere.Open("/no/such/dir/x.csv", "a").message(),
              HasSubstr("/no/such/dir/x.csv: cannot write"));
}

// A checkpoint directory belongs to one run: while a process writes there, another process's
// run is refused with a message instead of clobbering its files; the lock goes with the process.
TEST(CheckpointTest, ASecondRunInTheSameDirectoryIsRefused) {
  testing::TempDir tmp;
  const std::string dir = tmp.Path("ck");
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the other run: takes the directory and holds it until told
    auto start = OpenCheckpoints(dir, false, true);
    const char ok = start.ok() ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    char c;
    (void)!read(done[0], &c, 1);
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  auto second = OpenCheckpoints(dir, false, true);
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(),
              HasSubstr(dir + ": another run uses this checkpoint directory (process " +
                        std::to_string(child) + ")"));
  EXPECT_TRUE(OpenCheckpoints(dir, false, false).ok());  // a process that only reads
  (void)!write(done[1], "x", 1);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(OpenCheckpoints(dir, false, true).ok());  // free again
}

TEST(CheckpointTest, DurationsParse) {
  EXPECT_EQ(*ParseSeconds("30s", "--every"), 30);
  EXPECT_EQ(*ParseSeconds("2m", "--every"), 120);
  EXPECT_EQ(*ParseSeconds("500ms", "--every"), 0.5);
  EXPECT_EQ(*ParseSeconds("1.5", "--every"), 1.5);
  EXPECT_EQ(*ParseSeconds("1h", "--every"), 3600);
  for (const char* bad : {"", "s", "-3s", "0", "10 parsecs", "nan", "3d"}) {
    EXPECT_THAT(ParseSeconds(bad, "--checkpoint-every").status().message(),
                HasSubstr("--checkpoint-every '"))
        << bad;
  }
}

}  // namespace
}  // namespace tessera
