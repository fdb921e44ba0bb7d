# Reference numbers for tests/test_models_*.py, made with R (Debian r-cran-lme4 1.1-31,
# r-cran-lmertest 3.1-3, r-cran-geepack) by:  cd tests/data && Rscript models_reference.R
# Writes models_reference.csv (dataset, model, kind, term, estimate, se, df) and cbpp_binary.csv.
suppressMessages({library(lme4); library(lmerTest); library(geepack)})
out <- list()
add <- function(...) out[[length(out) + 1]] <<- data.frame(...)

# 1. Satterthwaite degrees of freedom of the fixed effects (lmerTest).
ss <- read.csv("sleepstudy.csv")
bt <- read.csv("btheb_long.csv")
bt$treatment <- relevel(factor(bt$treatment), "TAU")
bt$drug <- relevel(factor(bt$drug), "No")
bt$length <- relevel(factor(bt$length), "<6m")
bt <- bt[!is.na(bt$bdi), ]
lmms <- list(
  list("sleepstudy", "RI", Reaction ~ Days + (1 | Subject), ss),
  list("sleepstudy", "RS", Reaction ~ Days + (1 + Days | Subject), ss),
  list("BtheB", "lmer1_RI", bdi ~ bdi_pre + time + treatment + drug + length + (1 | id), bt),
  list("BtheB", "lmer2_RI_slope", bdi ~ bdi_pre + time + treatment + drug + length + (time | id), bt)
)
#    REML (kind satterthwaite) and ML (kind satterthwaite_ML).
for (reml in c(TRUE, FALSE)) for (m in lmms) {
  fit <- lmerTest::lmer(m[[3]], m[[4]], REML = reml,
                        control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  cf <- summary(fit, ddf = "Satterthwaite")$coefficients
  kind <- if (reml) "satterthwaite" else "satterthwaite_ML"
  for (i in seq_len(nrow(cf))) add(dataset = m[[1]], model = m[[2]], kind = kind,
                                   term = rownames(cf)[i], estimate = cf[i, 1], se = cf[i, 2], df = cf[i, 3])
}

# 2. Random-intercept logistic models by Laplace (nAGQ = 1) and adaptive Gauss-Hermite (nAGQ = 10, 25).
data(cbpp)
rows <- list()
for (i in seq_len(nrow(cbpp))) {
  r <- cbpp[i, ]
  rows[[i]] <- data.frame(herd = as.integer(r$herd), period = as.integer(r$period),
                          y = c(rep(1, r$incidence), rep(0, r$size - r$incidence)))
}
cb <- do.call(rbind, rows)
write.csv(cb, "cbpp_binary.csv", row.names = FALSE)
cb$period <- factor(cb$period)
bt$remit <- as.integer(bt$bdi <= 10)
glmms <- list(
  list("cbpp", y ~ period + (1 | herd), cb),
  list("BtheB", remit ~ bdi_pre + time + treatment + drug + length + (1 | id), bt)
)
# glmer's default PIRLS tolerance (tolPwrss = 1e-7) leaves its conditional modes, and so the centre of
# its quadrature, inexact: on Beat the Blues with nAGQ = 10 its log-likelihood moves by 6e-5 and the
# intercept's SE by 1.2e-4 (relative) with tolPwrss = 1e-12, which is used here.
for (m in glmms) {
  for (q in c(1, 10, 25)) {
    fit <- glmer(m[[2]], m[[3]], family = binomial, nAGQ = q,
                 control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12, optCtrl = list(maxfun = 1e5)))
    cf <- summary(fit)$coefficients
    mod <- paste0("glmer_nAGQ", q)
    for (i in seq_len(nrow(cf))) add(dataset = m[[1]], model = mod, kind = "fixed", term = rownames(cf)[i],
                                     estimate = cf[i, 1], se = cf[i, 2], df = NA)
    add(dataset = m[[1]], model = mod, kind = "varcomp", term = "var((Intercept))",
        estimate = as.data.frame(VarCorr(fit))$vcov[1], se = NA, df = NA)
    add(dataset = m[[1]], model = mod, kind = "fit", term = "logLik", estimate = as.numeric(logLik(fit)), se = NA, df = NA)
  }
}

# 3. GEE logistic, exchangeable working correlation, robust (sandwich) SEs.
gees <- list(
  list("cbpp", y ~ factor(period), cb, "herd"),
  list("BtheB", remit ~ bdi_pre + time + treatment + drug + length, bt, "id")
)
for (m in gees) {
  d <- m[[3]][order(m[[3]][[m[[4]]]]), ]
  fit <- geeglm(m[[2]], data = d, id = d[[m[[4]]]], family = binomial, corstr = "exchangeable")
  cf <- summary(fit)$coefficients
  for (i in seq_len(nrow(cf))) add(dataset = m[[1]], model = "geeglm_exch", kind = "fixed",
                                   term = rownames(cf)[i], estimate = cf[i, 1], se = cf[i, 2], df = NA)
  add(dataset = m[[1]], model = "geeglm_exch", kind = "corr", term = "alpha",
      estimate = summary(fit)$corr[1, 1], se = NA, df = NA)
}
res <- do.call(rbind, out)
write.csv(res, "models_reference.csv", row.names = FALSE)
print(res, digits = 10)
