# Time lme4::lmer on a benchmark CSV written by bench_mixed.py (the same data the Python engines get).
#
#   Rscript benchmarks/bench_lme4.R DATA.csv MODEL REPEATS [OPTIMIZER [CALC_DERIVS]]
#
# MODEL is RI (random intercept) or RS (random intercept + slope on time); REML as lmer's default.
# OPTIMIZER defaults to lme4's own default for lmer, "nloptwrap" (NLopt's BOBYQA); pass "bobyqa"
# for minqa's BOBYQA as in tests/data's reference fits. CALC_DERIVS (TRUE, lmer's default, or
# FALSE) is lmerControl's calc.derivs: the finite-difference Hessian of lme4's convergence check.
# Only lmer() is timed (elapsed time), after one untimed warm-up fit on a small subset.
# Prints one JSON object per line on stdout.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: Rscript bench_lme4.R DATA.csv MODEL REPEATS [OPTIMIZER]")
csv <- args[1]
model <- args[2]
repeats <- as.integer(args[3])
optimizer <- if (length(args) >= 4) args[4] else "nloptwrap"
calc_derivs <- if (length(args) >= 5) as.logical(args[5]) else TRUE
suppressMessages(library(lme4))

d <- read.csv(csv)
d$pid <- factor(d$pid)
f <- if (model == "RI") {
  y ~ time * arm + baseline + (1 | pid)
} else if (model == "RS") {
  y ~ time * arm + baseline + (1 + time | pid)
} else {
  stop("MODEL must be RI or RS")
}
ctrl <- lmerControl(optimizer = optimizer, calc.derivs = calc_derivs)

# warm-up (method dispatch, compiled code loading) on the first 100 patients
small <- droplevels(d[d$pid %in% levels(d$pid)[1:min(100, nlevels(d$pid))], ])
invisible(suppressMessages(lmer(f, small, control = ctrl)))

json_num <- function(x) formatC(x, digits = 15, format = "g")
for (r in seq_len(repeats)) {
  invisible(gc(reset = TRUE))
  t <- system.time(fit <- lmer(f, d, control = ctrl))[["elapsed"]]
  g <- gc()
  max_used_mb <- sum(g[, ncol(g)])  # "max used" (Mb) of Ncells + Vcells since the reset
  fe <- fixef(fit)
  cat(sprintf(
    '{"engine": "lme4", "repeat": %d, "fit_s": %s, "loglik": %s, "fixef": [%s], "r_max_used_mb": %s, "singular": %s, "optimizer": "%s", "calc_derivs": %s, "lme4_version": "%s"}\n',
    r, json_num(t), json_num(as.numeric(logLik(fit))), paste(json_num(fe), collapse = ", "),
    json_num(max_used_mb), tolower(as.character(isSingular(fit))), optimizer, tolower(as.character(calc_derivs)),
    as.character(packageVersion("lme4"))
  ))
}
