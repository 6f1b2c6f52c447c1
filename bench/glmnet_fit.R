# glmnet side of bench/lasso_bench.py. Fits the same problem Tessera fits,
#   (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1   (standardize = FALSE, intercept = TRUE),
# `repeats` times with convergence threshold `thresh` and prints:
#   glmnet,<seconds per run ;-separated>,<objective>,<nonzeros>
# usage: Rscript glmnet_fit.R PREFIX LAMBDA REPEATS THRESH [dense]
suppressMessages({ library(Matrix); library(glmnet) })
args <- commandArgs(trailingOnly = TRUE)
prefix <- args[1]; lambda <- as.numeric(args[2]); repeats <- as.integer(args[3])
thresh <- as.numeric(args[4])
x <- as(readMM(paste0(prefix, ".mtx")), "CsparseMatrix")
if (length(args) > 4 && args[5] == "dense") x <- as.matrix(x)
y <- scan(paste0(prefix, ".y"), quiet = TRUE)
times <- numeric(repeats)
for (k in seq_len(repeats)) {
  t <- system.time(fit <- glmnet(x, y, family = "gaussian", lambda = lambda,
                                 standardize = FALSE, intercept = TRUE, thresh = thresh))
  times[k] <- t[["elapsed"]]
}
b <- as.numeric(coef(fit))
r <- y - b[1] - as.numeric(x %*% b[-1])
obj <- sum(r^2) / (2 * length(y)) + lambda * sum(abs(b[-1]))
cat(sprintf("glmnet,%s,%.17g,%d\n", paste(sprintf("%.6f", times), collapse = ";"), obj,
            sum(b[-1] != 0)))
