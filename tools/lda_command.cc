#include "tessera/tools/lda_command.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/tools/builtin_commands.h"
#include "tessera/tools/cluster.h"

namespace tessera {

StatusOr<Corpus> ReadCorpus(const std::string& path, const std::string& vocab,
                            const std::string& format, int min_count) {
  std::string f = format;
  if (f == "auto") {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (name.find("docword") != std::string::npos || !vocab.empty()) {
      f = "uci";
    } else if (name.find("svm") != std::string::npos) {
      f = "libsvm";
    } else {
      f = "text";
    }
  }
  if (f == "uci") return ReadUciBagOfWords(path, vocab);
  if (!vocab.empty()) return InvalidArgument("--vocab goes with UCI docword files only");
  if (f == "libsvm") return ReadLibsvmCounts(path);
  if (f == "text") return ReadTextCorpus(path, min_count);
  return InvalidArgument("--format: unknown corpus format '" + format +
                         "' (expected auto, uci, libsvm or text)");
}

void AddLdaFlags(CLI::App& t, LdaFlags& f) {
  f.data_parallel.consistency = f.opts.data_parallel.consistency.ToString();
  f.data_parallel.frequency = f.opts.data_parallel.frequency.ToString();
  t.add_option("--corpus", f.corpus,
               "Documents: UCI docword.*.txt, LIBSVM term counts, or text (one document per "
               "line); .gz read transparently");
  t.add_option("--vocab", f.vocab, "UCI vocab.*.txt (word w on line w)");
  t.add_option("--format", f.format, "auto | uci | libsvm | text")->capture_default_str();
  t.add_option("--min-count", f.min_count, "Text corpora: drop words seen fewer times")
      ->capture_default_str();
  t.add_option("--topics", f.opts.topics, "K")->capture_default_str();
  t.add_option("--alpha", f.opts.alpha, "Document-topic prior (0: 50/K)")->capture_default_str();
  t.add_option("--beta", f.opts.beta, "Topic-word prior")->capture_default_str();
  t.add_option("--iterations", f.opts.iterations, "Sweeps over every token")->capture_default_str();
  t.add_option("--sampler", f.opts.sampler,
               "mh (O(1) Metropolis-Hastings, LightLDA/WarpLDA proposals) | gibbs (O(K) "
               "reference)")
      ->capture_default_str();
  t.add_option("--mh-steps", f.opts.mh_steps, "mh: doc+word proposal cycles per token")
      ->capture_default_str();
  t.add_option("--workers", f.opts.engine.workers,
               "Worker fibers, each owning a document partition")
      ->capture_default_str();
  t.add_option("--seed", f.opts.seed, "Seed of the initial topics and the samplers")
      ->capture_default_str();
  t.add_option("--max-seconds", f.opts.engine.max_seconds, "Stop after this many seconds");
  t.add_option("--evaluate-every", f.opts.evaluate_every,
               "Iterations between log-likelihood evaluations")
      ->capture_default_str();
  t.add_option("--heldout", f.heldout,
               "Hold out this fraction of the documents and report their perplexity by "
               "document completion at every evaluation")
      ->capture_default_str();
  t.add_option("--test", f.test,
               "Held-out documents in the corpus's format and vocabulary (instead of --heldout)");
  t.add_option("--top-words", f.top_words, "Words per topic in the topics file and display")
      ->capture_default_str();
  t.add_option("--show-topics", f.show_topics, "Topics printed at the end (0: none)")
      ->capture_default_str();
  t.add_option("--topics-out", f.topics_out, "Write every topic's top words here");
  t.add_flag("--no-files", f.no_files, "Write neither the topics nor the model file");
  t.add_option("--mode", f.opts.mode,
               "model-parallel (word rotation) | data-parallel (counts on a parameter server)")
      ->capture_default_str();
  AddDataParallelFlags(t, f.opts.data_parallel, f.data_parallel,
                       "Documents per batch (0: the worker's whole partition)");
}

Status PrepareLda(LdaFlags& f, const CheckpointSettings& checkpoints) {
  if (!(f.heldout >= 0 && f.heldout < 1)) return InvalidArgument("--heldout must be in [0, 1)");
  if (f.heldout > 0 && !f.test.empty()) {
    return InvalidArgument("give --heldout or --test, not both");
  }
  f.opts.engine.label = "lda";
  TESSERA_RETURN_IF_ERROR(ParseDataParallelFlags(f.data_parallel, f.opts.data_parallel));
  SetCheckpointOptions(checkpoints, f.opts);
  return f.opts.Validate();
}

int FitLda(LdaFlags& f, const CommonFlags& c, Cluster& cluster) {
  f.opts.engine.transport = cluster.transport();
  f.opts.engine.progress = !c.quiet;
  if (!cluster.leader()) f.no_files = true;  // process 0 reports and writes
  auto all = ReadCorpus(f.corpus, f.vocab, f.format, f.min_count);
  if (!all.ok()) return Fail(all.status());
  Corpus train, test;
  bool has_test = false;
  if (f.heldout > 0) {
    HoldOutDocuments(*all, f.heldout, f.opts.seed, train, test);
    has_test = test.num_docs() > 0;
  } else {
    train = std::move(*all);
    if (!f.test.empty()) {
      auto t = ReadCorpus(f.test, f.vocab, f.format, f.min_count);
      if (!t.ok()) return Fail(t.status());
      if (t->num_words() > train.num_words()) {
        return Fail(InvalidArgument(f.test + ": has " + std::to_string(t->num_words()) +
                                    " words, more than the corpus's " +
                                    std::to_string(train.num_words())));
      }
      test = std::move(*t);
      test.vocab = train.vocab;
      has_test = true;
    }
  }
  const double n = static_cast<double>(train.num_tokens());
  if (!c.quiet) {
    std::printf("tessera lda: %s: %zu documents, %zu words, %.0f tokens", train.source.c_str(),
                train.num_docs(), train.num_words(), n);
    if (has_test) std::printf("; held out %zu documents", test.num_docs());
    const auto& dp = f.opts.data_parallel;
    std::printf("\n  %s, %s sampler, K %d, alpha %g, beta %g, %d workers on %d threads",
                f.opts.mode.c_str(), f.opts.sampler.c_str(), f.opts.topics, f.opts.alpha_value(),
                f.opts.beta, f.opts.engine.workers, FiberPool::Global().threads());
    if (f.opts.mode == "data-parallel") {
      std::printf(", %d servers, consistency %s, update frequency %s, batch %zu documents",
                  dp.servers, dp.consistency.ToString().c_str(), dp.frequency.ToString().c_str(),
                  dp.batch_size);
    }
    std::printf("\n");
  }
  auto print = [&](const LdaIteration& it) {
    if (c.quiet) return;
    ClearProgressLine();
    std::printf("iteration %4d  log-likelihood/token %.4f  %.3f s  %.3g tokens/s", it.iteration,
                it.ll_per_token, it.seconds, it.tokens_per_second);
    if (!std::isnan(it.perplexity)) std::printf("  held-out perplexity %.1f", it.perplexity);
    std::printf("\n");
    std::fflush(stdout);
  };
  Stopwatch total;
  auto result = TrainLda(std::move(train), f.opts, has_test ? &test : nullptr, print);
  if (!result.ok()) return Fail(result.status());
  if (!result->run.holds_result) return 0;
  if (!c.quiet && !result->resumed.empty()) {
    std::printf("resumed from %s\n", result->resumed.c_str());
  }
  const double setup_seconds = total.Seconds() - result->run.seconds;
  const LdaModel& m = result->model;
  if (!c.quiet) {
    std::printf(
        "%s after %d iterations, %.3f s sampling, %.3g tokens/s; bytes moved %llu; peak "
        "RSS %.1f MiB\n",
        result->run.stop_reason.c_str(),
        result->history.empty() ? 0 : result->history.back().iteration,
        result->history.empty() ? 0.0 : result->history.back().seconds, result->tokens_per_second,
        static_cast<unsigned long long>(result->run.bytes), PeakRssBytes() / 1048576.0);
    PrintStaleness(result->run.staleness);
    for (int k = 0; k < std::min(f.show_topics, m.topics); ++k) {
      std::printf("topic %3d:", k);
      for (std::uint32_t w : m.TopWords(k, f.top_words)) std::printf(" %s", m.vocab[w].c_str());
      std::printf("\n");
    }
  }
  if (!f.no_files && !f.topics_out.empty()) {
    if (auto st = WriteLdaTopics(f.topics_out, m, f.top_words); !st.ok()) return Fail(st);
    if (!c.quiet)
      std::printf("wrote %s (top words of %d topics)\n", f.topics_out.c_str(), m.topics);
  }
  if (!f.no_files && !c.output.empty()) {
    if (auto st = WriteLdaModel(c.output, m); !st.ok()) return Fail(st);
    if (!c.quiet) std::printf("wrote %s (word-topic and doc-topic counts)\n", c.output.c_str());
  }
  // The trace and summary state the objective as -log p(w, z), minimized like the other apps'
  // (tessera compare reads them); bytes per evaluation are known only in total: spread evenly.
  const double iterations =
      result->history.empty() ? 1.0 : std::max(1, result->history.back().iteration);
  if (!c.trace.empty()) {
    CsvWriter out;
    if (auto st = out.Open(c.trace,
                           "round,seconds,objective,ll_per_token,tokens_per_second,perplexity,"
                           "bytes");
        !st.ok()) {
      return Fail(st);
    }
    for (const LdaIteration& it : result->history) {
      const auto bytes = static_cast<std::uint64_t>(static_cast<double>(result->run.bytes) *
                                                    it.iteration / iterations);
      out.Row(std::to_string(it.iteration) + "," + FormatDouble(it.seconds) + "," +
              FormatDouble(-it.log_likelihood) + "," + FormatDouble(it.ll_per_token) + "," +
              FormatDouble(it.tokens_per_second) + "," + FormatDouble(it.perplexity) + "," +
              std::to_string(bytes));
    }
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
  }
  if (!c.summary.empty()) {
    const LdaIteration last = result->history.empty() ? LdaIteration{} : result->history.back();
    CsvWriter out;
    if (auto st = out.Open(c.summary,
                           "mode,objective,ll_per_token,perplexity,rounds,seconds,setup_seconds,"
                           "tokens_per_second,bytes,peak_rss,stop" +
                               StalenessColumns());
        !st.ok()) {
      return Fail(st);
    }
    out.Row(f.opts.mode + "," + FormatDouble(-last.log_likelihood) + "," +
            FormatDouble(last.ll_per_token) + "," + FormatDouble(last.perplexity) + "," +
            std::to_string(last.iteration) + "," + FormatDouble(last.seconds) + "," +
            FormatDouble(setup_seconds) + "," + FormatDouble(result->tokens_per_second) + "," +
            std::to_string(result->run.bytes) + "," + std::to_string(PeakRssBytes()) + "," +
            result->run.stop_reason + StalenessValues(result->run.staleness));
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
  }
  return 0;
}

namespace {

// `tessera lda infer`: the topic mixtures of new documents under a saved model.
struct LdaInferFlags {
  std::string model, corpus, vocab, format = "auto", output;
  LdaInferOptions opts;
};

CLI::App* AddLdaInferCommand(CLI::App& lda, LdaInferFlags& f) {
  CLI::App* cmd = lda.add_subcommand(
      "infer",
      "Topic mixtures of new documents under a model that 'tessera lda --output' wrote (Gibbs "
      "sampling of their topics with the model's topic-word distributions fixed)");
  cmd->add_option("--model", f.model, "The model file")->required();
  cmd->add_option("--corpus", f.corpus,
                  "The documents, in any corpus format; words are matched to the model's by name")
      ->required();
  cmd->add_option("--vocab", f.vocab, "UCI vocab.*.txt of the documents");
  cmd->add_option("--format", f.format, "auto | uci | libsvm | text")->capture_default_str();
  cmd->add_option("--burn-in", f.opts.burn_in, "Sweeps before the mixture is averaged")
      ->capture_default_str();
  cmd->add_option("--samples", f.opts.samples, "Sweeps averaged")->capture_default_str();
  cmd->add_option("--seed", f.opts.seed, "Seed of the sampler")->capture_default_str();
  cmd->add_option("--output", f.output,
                  "Write document,tokens,topic_0,...,topic_K-1 CSV here (written atomically; "
                  "default: standard output)");
  return cmd;
}

int RunLdaInfer(const LdaInferFlags& f) {
  if (!f.output.empty()) {
    if (Status s = CheckWritable(f.output); !s.ok()) return Fail(s);
  }
  auto model = ReadLdaModel(f.model);
  if (!model.ok()) return Fail(model.status());
  auto docs = ReadCorpus(f.corpus, f.vocab, f.format, 1);
  if (!docs.ok()) return Fail(docs.status());
  auto r = InferLdaTopics(*model, *docs, f.opts);
  if (!r.ok()) return Fail(r.status());
  std::uint64_t known = 0;
  for (std::uint64_t t : r->tokens) known += t;
  if (known == 0) {
    return Fail(InvalidArgument(f.corpus + ": none of its " + std::to_string(r->unknown_tokens) +
                                " tokens is a word of the model (" + f.model +
                                "): a different vocabulary?"));
  }
  std::string header = "document,tokens";
  for (int k = 0; k < model->topics; ++k) header += ",topic_" + std::to_string(k);
  auto row = [&](std::size_t d) {
    std::string line = std::to_string(d + 1) + "," + std::to_string(r->tokens[d]);
    for (int k = 0; k < model->topics; ++k) {
      line += "," + FormatDouble(r->theta(static_cast<Eigen::Index>(d), k));
    }
    return line;
  };
  if (f.output.empty()) {
    std::printf("%s\n", header.c_str());
    for (std::size_t d = 0; d < docs->num_docs(); ++d) std::printf("%s\n", row(d).c_str());
  } else {
    CsvWriter out;
    if (Status s = out.Open(f.output, header); !s.ok()) return Fail(s);
    for (std::size_t d = 0; d < docs->num_docs(); ++d) out.Row(row(d));
    if (Status s = out.Finish(); !s.ok()) return Fail(s);
  }
  std::fprintf(stderr,
               "tessera lda infer: %zu documents, %llu tokens of the model's words sampled, %llu "
               "of unknown words skipped; K %d%s%s\n",
               docs->num_docs(), static_cast<unsigned long long>(known),
               static_cast<unsigned long long>(r->unknown_tokens), model->topics,
               f.output.empty() ? "" : "; wrote ", f.output.c_str());
  return 0;
}

class LdaCommand final : public AppCommand {
 public:
  std::string name() const override { return "lda"; }
  CLI::App* Add(CLI::App& app) override {
    CLI::App* cmd = AppCommand::Add(app);
    infer_ = AddLdaInferCommand(*cmd, infer_flags_);
    return cmd;
  }
  int Run(CLI::App& cmd) override {
    if (infer_->parsed()) return RunLdaInfer(infer_flags_);
    // Required of a fit, not of infer.
    if (f_.corpus.empty()) return UsageError("--corpus is required");
    return AppCommand::Run(cmd);
  }
  const CompareSpec* compare() const override {
    // The objective is -log p(w, z) (minimized, like the others).
    static const CompareSpec spec = [] {
      CompareSpec s;
      s.own = {"--topics-out", "--no-files", "--max-seconds", "--iterations"};
      s.seconds_flag = "--max-seconds";
      s.rounds_flag[0] = "--iterations";
      s.rounds_flag[1] = "--iterations";
      s.extra = {"ll_per_token", "perplexity", "tokens_per_second"};
      s.curve = "ll_per_token";
      s.curve_label = "log-likelihood per token";
      s.rising = true;
      s.child_args = {"--no-files"};
      return s;
    }();
    return &spec;
  }

 protected:
  std::string description() const override {
    return "Fit an LDA topic model by collapsed Gibbs sampling (model-parallel word rotation)";
  }
  void AddFlags(CLI::App& cmd) override { AddLdaFlags(cmd, f_); }
  std::string trace_help() const override {
    return "Per-evaluation CSV: round (iteration),seconds,objective (-log p(w,z)),"
           "ll_per_token,tokens_per_second,perplexity,bytes";
  }
  std::string output_help() const override {
    return "Write the model (word-topic and doc-topic counts) here";
  }
  std::vector<std::string> written_files() const override {
    if (f_.no_files) return {};
    std::vector<std::string> files = AppCommand::written_files();
    if (!f_.topics_out.empty()) files.push_back(f_.topics_out);
    return files;
  }
  std::string checkpoint_help() const override {
    return "model-parallel: after a sweep, data-parallel: after an evaluated sweep; every "
           "--checkpoint-every (default: each one)";
  }
  StatusOr<Topology> Prepare() override {
    TESSERA_RETURN_IF_ERROR(PrepareLda(f_, checkpoints()));
    return Topology{f_.opts.mode == "data-parallel", f_.opts.data_parallel.servers,
                    f_.opts.engine.workers};
  }
  int Fit(Cluster& cluster) override { return FitLda(f_, common(), cluster); }

 private:
  LdaFlags f_;
  LdaInferFlags infer_flags_;
  CLI::App* infer_ = nullptr;
};

}  // namespace

void RegisterLdaCommand() { Commands().Add(std::make_unique<LdaCommand>()); }
}  // namespace tessera
