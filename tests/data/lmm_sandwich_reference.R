# Reference numbers for tests/test_models_lmm_se.py: cluster-robust (sandwich) SEs of the fixed effects of a
# linear mixed model, by clubSandwich (Pustejovsky), the R reference for small-sample cluster-robust inference.
# Made with R 4.2 and the Debian packages r-cran-lme4 1.1-31, r-cran-clubsandwich 0.5.8 by:
#
#   cd tests/data && Rscript lmm_sandwich_reference.R      # -> lmm_sandwich_reference.csv
#
# Fits (REML, lme4's bobyqa): the demo's primary and complete_case models on exactly the rows ketastats
# analyses (demo_rows/, made by demo_rows.py: y, the design x0..x7, random intercept and slope on progress, as
# listed in demo_rows/manifest.csv) and sleepstudy (Reaction ~ Days + (Days | Subject)). For each, clubSandwich::vcovCR with
# type CR0 (no adjustment), CR2 (Bell-McCaffrey bias-reduced linearization, working model = the fitted V) and
# CR3 (the (I - H_ii)^-1 adjustment of Mancl & DeRouen), and coef_test(test = "Satterthwaite") for CR2's df.
# Output: data, type, term, estimate, se, df (df only for CR2).
suppressMessages({library(lme4); library(clubSandwich)})
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
out <- list()
run <- function(name, fit, terms) {
  est <- fixef(fit)
  for (type in c("CR0", "CR2", "CR3")) {
    vc <- vcovCR(fit, type = type)
    se <- sqrt(diag(as.matrix(vc)))
    df <- NA * se
    if (type == "CR2") df <- coef_test(fit, vcov = vc, test = "Satterthwaite")$df_Satt
    out[[length(out) + 1]] <<- data.frame(data = name, type = type, term = terms, estimate = unname(est),
                                          se = unname(se), df = unname(df))
  }
}
man <- read.csv("demo_rows/manifest.csv", stringsAsFactors = FALSE, na.strings = "")
for (model in c("primary", "complete_case")) {
  m <- man[man$model == model, ]
  d <- read.csv(gzfile(file.path("demo_rows", m$file)))
  d <- d[d$part == m$part, ]
  terms <- strsplit(m$terms, ";")[[1]]
  xs <- paste0("x", seq_along(terms) - 1)
  zs <- xs[as.integer(strsplit(m$random, ";")[[1]]) + 1]
  f <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "), "+ (0 +", paste(zs, collapse = " + "), "| group)"))
  run(model, lmer(f, d, REML = TRUE, control = ctrl), terms)
}
s <- read.csv("sleepstudy.csv")
fit <- lmer(Reaction ~ Days + (Days | Subject), s, REML = TRUE, control = ctrl)
run("sleepstudy", fit, c("Intercept", "Days"))
res <- do.call(rbind, out)
write.csv(res, "lmm_sandwich_reference.csv", row.names = FALSE)
