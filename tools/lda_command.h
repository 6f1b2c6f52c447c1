// `tessera lda`: fit a topic model and write its topics and counts.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "algorithms/lda/lda.h"
#include "tools/checkpoint_flags.h"
#include "tools/cluster.h"
#include "tools/data_parallel_flags.h"

namespace tessera {

struct LdaFlags {
  std::string corpus, vocab, format = "auto", test;
  std::string topics_out = "lda-topics.txt", output = "lda-model.txt", trace, summary;
  bool no_files = false;
  LdaOptions opts;
  double heldout = 0;
  int min_count = 1;
  int threads = 0;
  int top_words = 10;
  int show_topics = 10;
  bool quiet = false;
  DataParallelFlags data_parallel;
  ClusterFlags cluster;  // data-parallel runs across processes
  CheckpointFlags checkpoint;
};

CLI::App* AddLdaCommand(CLI::App& app, LdaFlags& flags);
int RunLda(LdaFlags& flags);

// Reads a corpus in `format` (auto | uci | libsvm | text): auto picks uci when the name has
// "docword" or a vocabulary is given, libsvm when it has "libsvm" or "svm", else text.
StatusOr<Corpus> ReadCorpus(const std::string& path, const std::string& vocab,
                            const std::string& format, int min_count);

}  // namespace tessera
