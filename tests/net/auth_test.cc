// Connection authentication: HMAC-SHA256 against RFC 4231's test vector, handshake MACs bound
// to both nonces, both ranks and the secret, sealed frames, and secrets from the environment.
#include "tessera/net/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

std::string Hex(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

TEST(AuthTest, HmacIsSha256PerRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(Hex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // The handshake MACs label \0 nonce_a nonce_c connector acceptor (ranks 4 bytes big-endian);
  // values from Python's hmac over the same bytes.
  const std::string a(32, 'A'), c(32, 'C');
  EXPECT_EQ(Hex(ConnectorMac("Jefe", a, c, 2, 0)),
            "8159666514de35a05dc02c177312cd85e3218dd94f2f652d735e820af1cb63e5");
  EXPECT_EQ(Hex(AcceptorMac("Jefe", a, c, 2, 0)),
            "858cb73b89c1bcc51fe022912a4733aaf02c3094716817cdb0aab681528addfb");
}

TEST(AuthTest, HandshakeMacsAreBoundToBothNoncesBothRanksAndTheSecret) {
  auto nonce = MakeNonce();
  ASSERT_TRUE(nonce.ok());
  EXPECT_EQ(nonce->size(), kNonceBytes);
  auto other = MakeNonce();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*nonce, *other);
  const std::string secret = "0123456789abcdef0123";
  const std::string mac = ConnectorMac(secret, *nonce, *other, 3, 1);
  EXPECT_TRUE(SameMac(mac, ConnectorMac(secret, *nonce, *other, 3, 1)));
  EXPECT_FALSE(SameMac(mac, ConnectorMac(secret, *nonce, *other, 4, 1)));
  EXPECT_FALSE(SameMac(mac, ConnectorMac(secret, *nonce, *other, 3, 2)));
  EXPECT_FALSE(SameMac(mac, ConnectorMac(secret, *other, *nonce, 3, 1)));
  EXPECT_FALSE(SameMac(mac, ConnectorMac("another secret of 20b", *nonce, *other, 3, 1)));
  // The acceptor's confirmation is not the connector's answer reflected back.
  EXPECT_FALSE(SameMac(mac, AcceptorMac(secret, *nonce, *other, 3, 1)));
  EXPECT_FALSE(SameMac("", ""));
  EXPECT_FALSE(SameMac(mac.substr(0, 31), mac));
}

// Sealed frames open in order, once, under the key of their direction only; an altered,
// replayed, reordered or foreign frame fails.
TEST(AuthTest, SealedFramesOpenOnlyInOrderAndUnaltered) {
  const std::string secret = "0123456789abcdef0123", a(32, 'a'), c(32, 'c');
  auto cipher = [&](bool to_acceptor) {
    auto made = FrameCipher::ForDirection(secret, a, c, 2, 0, to_acceptor);
    EXPECT_TRUE(made.ok());
    return std::move(*made);
  };
  auto seal = cipher(true), open = cipher(true);
  auto framed = [](const std::string& body) {
    std::string f(4, '\0');
    return f + body;
  };
  std::vector<std::string> sent;
  for (const std::string& body :
       std::vector<std::string>{"first frame", "", std::string(100000, 'x')}) {
    std::string f = framed(body);
    seal->Seal(f);
    ASSERT_EQ(f.size(), 4 + body.size() + kSealBytes);
    const auto n = (std::uint32_t(std::uint8_t(f[0])) << 24) |
                   (std::uint32_t(std::uint8_t(f[1])) << 16) |
                   (std::uint32_t(std::uint8_t(f[2])) << 8) | std::uint32_t(std::uint8_t(f[3]));
    EXPECT_EQ(n, body.size() + kSealBytes);
    EXPECT_EQ(f.find("first frame"), std::string::npos);  // encrypted
    sent.push_back(f.substr(4));
  }
  std::string plain;
  ASSERT_TRUE(open->Open(sent[0], plain).ok());
  EXPECT_EQ(plain, "first frame");
  EXPECT_FALSE(open->Open(sent[0], plain).ok());  // a replay
  auto fresh = cipher(true);
  EXPECT_FALSE(fresh->Open(sent[1], plain).ok());  // out of order
  std::string altered = sent[1];
  altered[0] ^= 1;
  EXPECT_THAT(cipher(true)->Open(altered, plain).message(), HasSubstr("failed authentication"));
  EXPECT_FALSE(cipher(false)->Open(sent[0], plain).ok());  // the other direction's key
  EXPECT_FALSE(cipher(true)->Open("short", plain).ok());
  auto in_order = cipher(true);
  for (std::size_t i = 0; i < sent.size(); ++i) ASSERT_TRUE(in_order->Open(sent[i], plain).ok());
  EXPECT_EQ(plain, std::string(100000, 'x'));
}

// With encryption off (--insecure) a frame's body travels readable but still authenticated:
// altered, replayed, reordered or foreign frames fail as sealed ones do, and a frame sealed
// one way never opens the other.
TEST(AuthTest, AuthenticatedOnlyFramesAreReadableButTamperEvident) {
  const std::string secret = "0123456789abcdef0123", a(32, 'a'), c(32, 'c');
  auto cipher = [&](bool encrypt) {
    auto made = FrameCipher::ForDirection(secret, a, c, 2, 0, true, encrypt);
    EXPECT_TRUE(made.ok());
    return std::move(*made);
  };
  auto seal = cipher(false);
  std::vector<std::string> sent;
  for (const std::string body : {"first frame", "second"}) {
    std::string f = std::string(4, '\0') + body;
    seal->Seal(f);
    ASSERT_EQ(f.size(), 4 + body.size() + kSealBytes);
    EXPECT_EQ(f.substr(4, body.size()), body);  // readable
    sent.push_back(f.substr(4));
  }
  std::string plain;
  auto open = cipher(false);
  ASSERT_TRUE(open->Open(sent[0], plain).ok());
  EXPECT_EQ(plain, "first frame");
  EXPECT_FALSE(open->Open(sent[0], plain).ok());           // a replay
  EXPECT_FALSE(cipher(false)->Open(sent[1], plain).ok());  // out of order
  std::string altered = sent[0];
  altered[3] ^= 1;
  EXPECT_THAT(cipher(false)->Open(altered, plain).message(), HasSubstr("failed authentication"));
  std::string tag_altered = sent[0];
  tag_altered.back() ^= 1;
  EXPECT_FALSE(cipher(false)->Open(tag_altered, plain).ok());
  EXPECT_FALSE(cipher(true)->Open(sent[0], plain).ok());  // the encrypting mode's key
  std::string encrypted = std::string(4, '\0') + "first frame";
  cipher(true)->Seal(encrypted);
  EXPECT_FALSE(cipher(false)->Open(encrypted.substr(4), plain).ok());
}

TEST(AuthTest, SecretsComeFromTheEnvironment) {
  auto generated = GenerateSecret();
  ASSERT_TRUE(generated.ok());
  EXPECT_EQ(generated->size(), 64u);
  unsetenv("TESSERA_SECRET");
  unsetenv("TESSERA_SECRET_FILE");
  unsetenv("TESSERA_SECRET_DIR");
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  unsetenv("HOME");
  EXPECT_THAT(SecretFromEnvironment().status().message(), HasSubstr("no shared secret"));
  if (!home.empty()) setenv("HOME", home.c_str(), 1);
  setenv("TESSERA_SECRET", "short", 1);
  EXPECT_THAT(SecretFromEnvironment().status().message(),
              HasSubstr("TESSERA_SECRET: the secret has 5 bytes; at least 16 needed"));
  setenv("TESSERA_SECRET", generated->c_str(), 1);
  EXPECT_EQ(*SecretFromEnvironment(), *generated);
  unsetenv("TESSERA_SECRET");
  testing::TempDir dir;
  setenv("TESSERA_SECRET_FILE", dir.File("secret", *generated + "\n").c_str(), 1);
  EXPECT_EQ(*SecretFromEnvironment(), *generated);
  setenv("TESSERA_SECRET_FILE", "/no/such/secret", 1);
  EXPECT_THAT(SecretFromEnvironment().status().message(),
              HasSubstr("/no/such/secret: cannot read"));
  unsetenv("TESSERA_SECRET_FILE");
}

// Without a secret in the environment every process of a user reads one file, which the
// first to look makes; one that others may read is refused.
TEST(AuthTest, WithoutASecretGivenTheUsersSecretFileIsMadeOnceAndShared) {
  unsetenv("TESSERA_SECRET");
  unsetenv("TESSERA_SECRET_FILE");
  testing::TempDir dir;
  const std::string where = dir.Path("secrets");
  setenv("TESSERA_SECRET_DIR", where.c_str(), 1);
  std::vector<std::string> seen(8);
  std::vector<std::thread> makers;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    makers.emplace_back([&seen, i] {
      auto s = SecretFromEnvironment();
      seen[i] = s.ok() ? *s : s.status().message();
    });
  }
  for (auto& t : makers) t.join();
  EXPECT_EQ(seen[0].size(), 64u) << seen[0];
  for (const std::string& s : seen) EXPECT_EQ(s, seen[0]);
  struct stat st {};
  ASSERT_EQ(stat((where + "/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*UserSecret(), seen[0]);
  ASSERT_EQ(chmod((where + "/secret").c_str(), 0644), 0);
  EXPECT_THAT(UserSecret().status().message(), HasSubstr("readable by you alone"));
  unsetenv("TESSERA_SECRET_DIR");
}

}  // namespace
}  // namespace tessera::net
