// Makes a MovieLens-style synthetic ratings set of any size, seeded: user activity and item
// popularity follow power laws (Zipf weights i^-a over a random order of the ids), and each
// rating is a true low-rank model plus noise,
//   r = mean + b_u + c_i + u_uᵀv_i + noise, rounded to halves and clipped to [1, 5],
// with u, v ~ N(0, 1/rank) per entry, b, c ~ N(0, 0.3²), noise ~ N(0, 0.5²). Writes
// "user item rating" lines to PREFIX.train and, for every tenth rating (--test-every), to
// PREFIX.test, and prints the RMSE of the true model on the test lines (the noise floor).
//   ratings_problem --users 70000 --items 10000 --ratings 10000000 --seed 1 --out /tmp/ml10m
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

namespace {

// Zipf weights i^-a, assigned to the ids in a random order (so busy ids are not the first).
std::discrete_distribution<std::uint32_t> PowerLaw(std::uint32_t n, double a,
                                                   std::mt19937_64& rng) {
  std::vector<double> w(n);
  for (std::uint32_t i = 0; i < n; ++i) w[i] = std::pow(static_cast<double>(i) + 1, -a);
  std::shuffle(w.begin(), w.end(), rng);
  return {w.begin(), w.end()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Make a synthetic ratings set with power-law degrees and a known low-rank model"};
  std::uint32_t users = 70000, items = 10000, rank = 10, test_every = 10;
  std::uint64_t ratings = 10000000, seed = 1;
  double user_exponent = 0.8, item_exponent = 1.0, noise = 0.5;
  std::string out;
  app.add_option("--users", users, "Users")->capture_default_str()->check(CLI::Range(1u, 1u << 30));
  app.add_option("--items", items, "Items")->capture_default_str()->check(CLI::Range(1u, 1u << 30));
  app.add_option("--ratings", ratings, "Ratings (train + test)")->capture_default_str();
  app.add_option("--rank", rank, "Rank of the true model")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--user-exponent", user_exponent, "Zipf exponent of user activity")
      ->capture_default_str();
  app.add_option("--item-exponent", item_exponent, "Zipf exponent of item popularity")
      ->capture_default_str();
  app.add_option("--noise", noise, "Noise standard deviation")->capture_default_str();
  app.add_option("--test-every", test_every, "Every N-th rating goes to the test set")
      ->capture_default_str()
      ->check(CLI::Range(2u, 1000000u));
  app.add_option("--seed", seed, "Seed")->capture_default_str();
  app.add_option("--out", out, "Output prefix: PREFIX.train, PREFIX.test")->required();
  CLI11_PARSE(app, argc, argv);

  std::mt19937_64 rng(seed);
  std::normal_distribution<double> factor(0, 1 / std::sqrt(static_cast<double>(rank)));
  std::normal_distribution<double> bias(0, 0.3), err(0, noise);
  std::vector<double> u(std::size_t{users} * rank), v(std::size_t{items} * rank), b(users),
      c(items);
  for (double& x : u) x = factor(rng);
  for (double& x : v) x = factor(rng);
  for (double& x : b) x = bias(rng);
  for (double& x : c) x = bias(rng);
  auto pick_user = PowerLaw(users, user_exponent, rng);
  auto pick_item = PowerLaw(items, item_exponent, rng);

  std::FILE* train = std::fopen((out + ".train").c_str(), "w");
  std::FILE* test = std::fopen((out + ".test").c_str(), "w");
  if (!train || !test) {
    std::perror(out.c_str());
    return 1;
  }
  double floor_sse = 0;
  std::uint64_t num_test = 0;
  for (std::uint64_t n = 1; n <= ratings; ++n) {
    const std::uint32_t i = pick_user(rng), j = pick_item(rng);
    const double truth =
        3.5 + b[i] + c[j] +
        std::inner_product(u.begin() + std::size_t{i} * rank, u.begin() + std::size_t{i + 1} * rank,
                           v.begin() + std::size_t{j} * rank, 0.0);
    const double r = std::clamp(std::round(2 * (truth + err(rng))) / 2, 1.0, 5.0);
    const bool held_out = n % test_every == 0;
    std::fprintf(held_out ? test : train, "%u\t%u\t%g\n", i + 1, j + 1, r);
    if (held_out) {
      floor_sse += (r - truth) * (r - truth);
      ++num_test;
    }
  }
  if (std::fclose(train) != 0 || std::fclose(test) != 0) {
    std::perror(out.c_str());
    return 1;
  }
  std::printf(
      "%s.train, %s.test: %llu ratings of %u users x %u items; true model's test RMSE %.4f\n",
      out.c_str(), out.c_str(), static_cast<unsigned long long>(ratings), users, items,
      std::sqrt(floor_sse / static_cast<double>(std::max<std::uint64_t>(num_test, 1))));
  return 0;
}
