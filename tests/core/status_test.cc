#include "tessera/core/status.h"

#include <gtest/gtest.h>

namespace tessera {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Status UseHalf(int x, int& out) {
  TESSERA_ASSIGN_OR_RETURN(out, Half(x));
  return Status::Ok();
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFound("x.csv: No such file");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "x.csv: No such file");
}

TEST(StatusTest, StatusOrCarriesValueOrError) {
  auto a = Half(4);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 2);
  auto b = Half(3);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "odd: 3");
  int out = 0;
  EXPECT_TRUE(UseHalf(8, out).ok());
  EXPECT_EQ(out, 4);
  EXPECT_EQ(UseHalf(5, out).message(), "odd: 5");
}

TEST(StatusDeathTest, CheckAbortsWithFileAndLine) {
  EXPECT_DEATH({ TESSERA_CHECK(1 + 1 == 3) << "arithmetic"; },
               "status_test.cc:[0-9]+: check failed: 1 \\+ 1 == 3 arithmetic");
}

}  // namespace
}  // namespace tessera
