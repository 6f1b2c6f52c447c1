// Connection authentication: HMAC-SHA256 against RFC 4231's test vector, responses bound to
// the nonce, the rank and the secret, and secrets from the environment.
#include "net/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

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
  // A response MACs nonce || "tessera" || rank; value from
  // `printf 'what do ya want tessera0' | openssl dgst -sha256 -hmac Jefe`.
  EXPECT_EQ(Hex(ResponseMac("Jefe", "what do ya want ", 0)),
            "479b00f62ab54cbd4248a04ecace573d7cfccc7882493e61432f3d2138d4fb8e");
}

TEST(AuthTest, ResponsesAreBoundToNonceRankAndSecret) {
  auto nonce = MakeNonce();
  ASSERT_TRUE(nonce.ok());
  EXPECT_EQ(nonce->size(), kNonceBytes);
  auto other = MakeNonce();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*nonce, *other);
  const std::string secret = "0123456789abcdef0123";
  const std::string mac = ResponseMac(secret, *nonce, 3);
  EXPECT_TRUE(VerifyResponse(secret, *nonce, 3, mac));
  EXPECT_FALSE(VerifyResponse(secret, *nonce, 4, mac));
  EXPECT_FALSE(VerifyResponse(secret, *other, 3, mac));
  EXPECT_FALSE(VerifyResponse("another secret of 20b", *nonce, 3, mac));
  EXPECT_FALSE(VerifyResponse(secret, *nonce, 3, ""));
  EXPECT_FALSE(VerifyResponse(secret, *nonce, 3, mac.substr(0, 31)));
}

TEST(AuthTest, SecretsComeFromTheEnvironment) {
  auto generated = GenerateSecret();
  ASSERT_TRUE(generated.ok());
  EXPECT_EQ(generated->size(), 64u);
  unsetenv("TESSERA_SECRET");
  unsetenv("TESSERA_SECRET_FILE");
  EXPECT_THAT(SecretFromEnvironment().status().message(), HasSubstr("no shared secret"));
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

}  // namespace
}  // namespace tessera::net
