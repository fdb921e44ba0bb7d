# Reference numbers for tests/test_lme4_reference.py and tests/test_fast_engine.py: lme4 fits on "Beat the Blues"
# (tests/data/btheb_long.csv), made with R 4.2 and Debian r-cran-lme4 1.1-31 by:
#   cd tests/data && Rscript btheb_reference.R
# Writes btheb_reference.csv (dataset, model, method, kind, term, estimate, se) on the rows with bdi present
# (280 observations, 97 patients): bdi ~ bdi_pre + time + treatment + drug + length + (1 | id) (lmer1_RI) and
# + (time | id) (lmer2_RI_slope), ML and REML, bobyqa; reference levels treatment TAU, drug No, length <6m.
# The CSV was made before this script was kept; the script was written afterwards from the CSV's layout and
# reproduces it byte for byte (docs/testing.md).
suppressMessages(library(lme4))
bt <- read.csv("btheb_long.csv")
bt$treatment <- relevel(factor(bt$treatment), "TAU")
bt$drug <- relevel(factor(bt$drug), "No")
bt$length <- relevel(factor(bt$length), "<6m")
bt <- bt[!is.na(bt$bdi), ]
out <- list()
add <- function(...) out[[length(out) + 1]] <<- data.frame(...)
models <- list(
  lmer1_RI = bdi ~ bdi_pre + time + treatment + drug + length + (1 | id),
  lmer2_RI_slope = bdi ~ bdi_pre + time + treatment + drug + length + (time | id)
)
for (m in names(models)) for (reml in c(FALSE, TRUE)) {
  fit <- lmer(models[[m]], bt, REML = reml, control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  meth <- if (reml) "REML" else "ML"
  cf <- summary(fit)$coefficients
  for (i in seq_len(nrow(cf))) add(dataset = "BtheB", model = m, method = meth, kind = "fixed", term = rownames(cf)[i], estimate = cf[i, 1], se = cf[i, 2])
  vc <- as.data.frame(VarCorr(fit))
  for (i in seq_len(nrow(vc))) {
    term <- if (is.na(vc$var1[i])) "residual_var" else if (is.na(vc$var2[i])) paste0("var(", vc$var1[i], ")") else paste0("cov(", vc$var1[i], ",", vc$var2[i], ")")
    add(dataset = "BtheB", model = m, method = meth, kind = "varcomp", term = term, estimate = vc$vcov[i], se = NA)
  }
  for (i in seq_len(nrow(vc))) if (!is.na(vc$var2[i]))
    add(dataset = "BtheB", model = m, method = meth, kind = "varcomp", term = paste0("corr(", vc$var1[i], ",", vc$var2[i], ")"), estimate = vc$sdcor[i], se = NA)
  ll <- logLik(fit)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "logLik", estimate = as.numeric(ll), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "minus2logLik", estimate = -2 * as.numeric(ll), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "AIC", estimate = AIC(ll), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "BIC", estimate = BIC(ll), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "nobs", estimate = nobs(fit), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "ngroups", estimate = as.numeric(ngrps(fit)), se = NA)
  add(dataset = "BtheB", model = m, method = meth, kind = "fit", term = "singular", estimate = as.numeric(isSingular(fit)), se = NA)
}
write.csv(do.call(rbind, out), "btheb_reference.csv", row.names = FALSE)
