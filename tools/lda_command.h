// `tessera lda`: fit a topic model and write its topics and counts.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/tools/command.h"
#include "tessera/tools/data_parallel_flags.h"

namespace tessera {

struct LdaFlags {
  std::string corpus, vocab, format = "auto", test;
  std::string topics_out;  // empty: none
  bool no_files = false;
  LdaOptions opts;
  double heldout = 0;
  int min_count = 1;
  int top_words = 10;
  int show_topics = 10;
  DataParallelFlags data_parallel;
};

// The command registers itself (tools/command.h); these are its parts: its own flags, their
// checks, and the fit in every process, reported as `common` says.
void AddLdaFlags(CLI::App& lda, LdaFlags& flags);
Status PrepareLda(LdaFlags& flags, const CheckpointSettings& checkpoints);
int FitLda(LdaFlags& flags, const CommonFlags& common, Cluster& cluster);

// Reads a corpus in `format` (auto | uci | libsvm | text): auto picks uci when the name has
// "docword" or a vocabulary is given, libsvm when it has "libsvm" or "svm", else text.
StatusOr<Corpus> ReadCorpus(const std::string& path, const std::string& vocab,
                            const std::string& format, int min_count);

}  // namespace tessera
