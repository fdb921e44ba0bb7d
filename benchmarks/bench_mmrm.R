# Time an unstructured MMRM (REML) in R on a benchmark CSV written by bench_mmrm.py (the same data ketastats gets).
#
#   Rscript benchmarks/bench_mmrm.R DATA.csv ENGINE REPEATS
#
# ENGINE: gls     nlme::gls(y ~ visit * arm + baseline, correlation = corSymm(form = ~ v | pid),
#                           weights = varIdent(form = ~ 1 | visit), method = "REML")
#         glmmTMB glmmTMB(y ~ visit * arm + baseline + us(0 + visit | pid), dispformula = ~ 0, REML = TRUE)
#                 (the residual variance fixed near zero, so the us() term is the whole covariance)
# Only the fit is timed (elapsed), after one untimed warm-up on the first 100 patients. One JSON line per fit.
args <- commandArgs(trailingOnly = TRUE)
csv <- args[1]
engine <- args[2]
repeats <- as.integer(args[3])
suppressMessages({library(nlme); library(glmmTMB)})
d <- read.csv(csv)
d$visit <- factor(d$visit)
d$pid <- factor(d$pid)
d$v <- as.integer(d$visit)
d <- d[order(d$pid, d$v), ]
fit_one <- function(dd) {
  if (engine == "gls") {
    f <- gls(y ~ visit * arm + baseline, dd, correlation = corSymm(form = ~ v | pid),
             weights = varIdent(form = ~ 1 | visit), method = "REML")
    list(m2loglik = -2 * as.numeric(logLik(f)), fixef = as.numeric(coef(f)))
  } else {
    f <- glmmTMB(y ~ visit * arm + baseline + us(0 + visit | pid), dd, dispformula = ~ 0, REML = TRUE)
    list(m2loglik = -2 * as.numeric(logLik(f)), fixef = as.numeric(fixef(f)$cond),
         converged = f$fit$convergence == 0 && isTRUE(f$sdr$pdHess))
  }
}
small <- droplevels(d[d$pid %in% levels(d$pid)[1:100], ])
invisible(suppressWarnings(fit_one(small)))
num <- function(x) formatC(x, digits = 15, format = "g")
for (r in seq_len(repeats)) {
  t <- system.time(res <- suppressWarnings(fit_one(d)))[["elapsed"]]
  cat(sprintf('{"engine": "%s", "repeat": %d, "fit_s": %s, "m2loglik": %s, "fixef": [%s], "converged": %s}\n',
              engine, r, num(t), num(res$m2loglik), paste(num(res$fixef), collapse = ", "),
              if (is.null(res$converged) || res$converged) "true" else "false"))
}
