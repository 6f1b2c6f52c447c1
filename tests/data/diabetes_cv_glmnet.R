# The reference for LassoCvTest.MatchesCvGlmnetOnDiabetes: cv.glmnet on the diabetes data with
# fold ids (row i, from 0: (7 i mod 10) + 1) along Tessera's λ path (the lambda column of
# `tessera lasso --foldid F --path 30 --cv-output cv.csv`), unstandardized, with an intercept:
# the problem tessera lasso solves. glmnet's threshold is tightened so that its fits are as
# exact as Tessera's.
#   Rscript tests/data/diabetes_cv_glmnet.R cv.csv > tests/data/diabetes_cv_glmnet.csv
suppressMessages(library(glmnet))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(gzfile("datasets/diabetes/lars_diabetes_x.csv.gz"))
x <- as.matrix(d[, setdiff(names(d), "y")])
y <- d$y
foldid <- (7 * (seq_len(nrow(x)) - 1)) %% 10 + 1
lambda <- read.csv(args[1])$lambda
fit <- cv.glmnet(x, y, lambda = lambda, foldid = foldid, standardize = FALSE, thresh = 1e-14,
                 type.measure = "mse")
cat(sprintf("# glmnet %s, lambda.min %.17g, lambda.1se %.17g\n", packageVersion("glmnet"),
            fit$lambda.min, fit$lambda.1se))
cat("lambda,cvm,cvsd\n")
cat(sprintf("%.17g,%.17g,%.17g\n", fit$lambda, fit$cvm, fit$cvsd), sep = "")
