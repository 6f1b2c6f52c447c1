#include "tessera/core/memory_limit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera {
namespace {

using ::testing::HasSubstr;

TEST(MemoryLimitTest, SizesParseWithBinaryUnits) {
  EXPECT_EQ(*ParseByteSize("65536"), 65536u);
  EXPECT_EQ(*ParseByteSize("512K"), 512u << 10);
  EXPECT_EQ(*ParseByteSize("512M"), 512u << 20);
  EXPECT_EQ(*ParseByteSize("4G"), std::uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("4GiB"), std::uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("4gb"), std::uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("1.5T"), std::uint64_t{3} << 39);
  for (const char* bad : {"", "G", "-1G", "0", "4X", "4GG", "nan", "inf", "1e30T", "4 G"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseByteSize(bad).ok());
  }
}

TEST(MemoryLimitTest, AnAllocationOverTheLimitIsAnErrorNamingBoth) {
  const std::uint64_t before = MaxMemoryBytes();
  EXPECT_GT(before, 0u);
  EXPECT_LE(before, PhysicalMemoryBytes());
  SetMaxMemoryBytes(std::uint64_t{1} << 20);
  EXPECT_TRUE(CheckAllocation("a table", 1 << 20).ok());
  const Status s = CheckAllocation("a table", 3.0 * (1 << 20));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "a table would need 3.0 MiB, more than the memory limit of 1.0 MiB (--max-memory)");
  EXPECT_THAT(CheckAllocation("x", 1e300).message(), HasSubstr("EiB"));
  SetMaxMemoryBytes(before);
  EXPECT_EQ(MaxMemoryBytes(), before);
}

TEST(MemoryLimitTest, BytesFormatInBinaryUnits) {
  EXPECT_EQ(FormatBytes(100), "100 bytes");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(3.0 * (1 << 30)), "3.0 GiB");
}

}  // namespace
}  // namespace tessera
