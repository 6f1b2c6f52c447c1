# glmnet side of bench/lasso_bench.py. Fits the same problem Tessera fits,
#   (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1   (standardize = FALSE, intercept = TRUE),
# at each lambda of a comma-separated list (several: one glmnet path over them, decreasing),
# `repeats` times with convergence threshold `thresh`, and prints:
#   glmnet,<seconds per run ;-separated>,<objective per lambda ;-separated>,<nonzeros at the last>
# usage: Rscript glmnet_fit.R PREFIX LAMBDA[,LAMBDA...] REPEATS THRESH [dense]
suppressMessages({ library(Matrix); library(glmnet) })
args <- commandArgs(trailingOnly = TRUE)
prefix <- args[1]; lambdas <- as.numeric(strsplit(args[2], ",")[[1]])
repeats <- as.integer(args[3]); thresh <- as.numeric(args[4])
x <- as(readMM(paste0(prefix, ".mtx")), "CsparseMatrix")
if (length(args) > 4 && args[5] == "dense") x <- as.matrix(x)
y <- scan(paste0(prefix, ".y"), quiet = TRUE)
times <- numeric(repeats)
for (k in seq_len(repeats)) {
  t <- system.time(fit <- glmnet(x, y, family = "gaussian", lambda = lambdas,
                                 standardize = FALSE, intercept = TRUE, thresh = thresh))
  times[k] <- t[["elapsed"]]
}
objectives <- numeric(length(lambdas))
for (l in seq_along(lambdas)) {
  b <- as.numeric(coef(fit, s = lambdas[l], exact = FALSE))
  r <- y - b[1] - as.numeric(x %*% b[-1])
  objectives[l] <- sum(r^2) / (2 * length(y)) + lambdas[l] * sum(abs(b[-1]))
}
cat(sprintf("glmnet,%s,%s,%d\n", paste(sprintf("%.6f", times), collapse = ";"),
            paste(sprintf("%.17g", objectives), collapse = ";"), sum(b[-1] != 0)))
