# Reference numbers for tests/test_models_demo_reference.py: every model kind of the shipped config, refitted
# in R on exactly the rows ketastats analyses on the frozen demo cohort. Made with R 4.2 and the Debian packages
# r-cran-lme4 1.1-31, r-cran-lmertest 3.1-3, r-cran-geepack 1.3.9 (numDeriv from lmerTest's dependencies) by:
#
#   PYTHONPATH=src python tests/data/demo_rows.py     # the rows, from tests/data/demo_sessions.csv
#   cd tests/data && Rscript demo_reference.R          # -> demo_reference.csv
#   cd tests/data && Rscript demo_reference.R mmrm     # refit only the models named; their rows are replaced
#
# demo_rows/manifest.csv lists the fits (model, fit number, data block, engine kind, design term names, which
# design columns carry random effects, REML, working correlation, delta); the blocks hold y, the fixed-effects
# design x0.. (x0 is the intercept column), the patient and, where used, the censoring flag, the session (wave)
# and the delta-adjustment mask. Output (demo_reference.csv): model, fit, source, kind, term (ketastats' term
# name), estimate, se, df.
#
# Conventions (docs/statistics.md, "Conventions that differ from R's"):
# - glmer is run with tolPwrss = 1e-12 (its default 1e-7 leaves the quadrature's centre inexact).
# - The censored (Tobit) model has no R package here; it is fitted by maximum likelihood with an independent
#   likelihood (each patient's integral by the trapezoidal rule on a fine grid around its mode), optim + Newton
#   steps, and SEs from numDeriv's Richardson Hessian of the full likelihood (ketastats' convention). For
#   markers without non-detects lmer(REML = FALSE) is also given (source lme4_ML): same estimates and
#   log-likelihood, conditional SEs.
# - geeglm estimates its own working correlation with its own moment estimators; the tests compare at it.
# - Multiple imputation: lmer on each completed data set, pooled here by Rubin's rules with Barnard-Rubin df
#   (complete-data df = nobs - p), as ketastats pools with se: model (source rubin); and with each fit's CR2
#   sandwich from clubSandwich (r-cran-clubsandwich 0.5.8), complete-data df = the mean over the fits of
#   coef_test's Satterthwaite df, as ketastats pools with se: cr2, its default (source rubin_cr2).
suppressMessages({library(lme4); library(lmerTest); library(geepack); library(numDeriv); library(nlme)
                  library(clubSandwich)})

man <- read.csv("demo_rows/manifest.csv", stringsAsFactors = FALSE, na.strings = "")
only <- commandArgs(trailingOnly = TRUE)
if (length(only)) man <- man[man$model %in% only, ]
cache <- list()
block <- function(file, part) {
  if (is.null(cache[[file]])) cache[[file]] <<- read.csv(file.path("demo_rows", file), stringsAsFactors = FALSE)
  b <- cache[[file]]
  b[b$part == part, ]
}
out <- list()
add <- function(model, fit, source, kind, term, estimate, se = NA, df = NA) {
  out[[length(out) + 1]] <<- data.frame(model = model, fit = fit, source = source, kind = kind, term = term,
                                        estimate = estimate, se = se, df = df)
}
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

lmer_fit <- function(m, d, xs, terms, rand) {
  zs <- xs[rand + 1]
  f <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "), "+ (0 +", paste(zs, collapse = " + "), "| group)"))
  fit <- lmerTest::lmer(f, d, REML = isTRUE(m$reml), control = ctrl)
  cf <- summary(fit, ddf = "Satterthwaite")$coefficients
  for (j in seq_along(xs)) add(m$model, m$fit, "lmerTest", "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2], cf[xs[j], 3])
  vc <- as.data.frame(VarCorr(fit))
  zterms <- terms[rand + 1]
  for (r in seq_len(nrow(vc))) {
    v <- vc[r, ]
    if (v$grp == "Residual") {
      add(m$model, m$fit, "lmerTest", "varcomp", "residual", v$vcov)
    } else if (is.na(v$var2)) {
      add(m$model, m$fit, "lmerTest", "varcomp", sprintf("var(%s)", zterms[match(v$var1, zs)]), v$vcov)
    } else {
      add(m$model, m$fit, "lmerTest", "varcomp",
          sprintf("cov(%s,%s)", zterms[match(v$var1, zs)], zterms[match(v$var2, zs)]), v$vcov)
    }
  }
  add(m$model, m$fit, "lmerTest", "fit", "logLik", as.numeric(logLik(fit)))
  add(m$model, m$fit, "lmerTest", "fit", "nobs", nobs(fit))
  list(est = cf[xs, 1], se = cf[xs, 2], nobs = nobs(fit), fit = fit, xs = xs)
}

# --- the censored (Tobit) random-intercept model, from its likelihood -------------------------------------
tobit_reference <- function(m, d, xs, terms) {
  y <- d$y; cens <- d$cens == 1; X <- as.matrix(d[, xs]); g <- as.integer(factor(d$group))
  p <- ncol(X); n <- length(y); npat <- max(g)
  u <- seq(-12, 12, length.out = 2001)  # grid offsets in units of tau around each patient's centre
  logf_grid <- function(par, centre) {
    beta <- par[1:p]; sigma <- exp(par[p + 1]); tau <- exp(par[p + 2])
    B <- outer(centre[g], rep(1, length(u))) + tau * outer(rep(1, n), u)
    Z <- (y - drop(X %*% beta) - B) / sigma
    L <- dnorm(Z, log = TRUE) - log(sigma)
    L[cens, ] <- pnorm(Z[cens, , drop = FALSE], log.p = TRUE)
    rowsum(L, g, reorder = TRUE) + dnorm(outer(centre, rep(1, length(u))) + tau * outer(rep(1, npat), u), 0, tau,
                                         log = TRUE)
  }
  ll <- function(par, centre) {
    lf <- logf_grid(par, centre)
    top <- apply(lf, 1, max)
    sum(top + log(rowSums(exp(lf - top))) + log(exp(par[p + 2]) * (u[2] - u[1])))
  }
  recentre <- function(par, centre) {
    lf <- logf_grid(par, centre)
    centre + exp(par[p + 2]) * u[apply(lf, 1, which.max)]
  }
  beta0 <- qr.solve(X, y); r0 <- sd(y - X %*% beta0)
  par <- c(beta0, log(0.7 * r0), log(0.7 * r0))
  centre <- rep(0, npat)
  for (k in 1:3) centre <- recentre(par, centre)
  for (k in 1:2) {  # quasi-Newton, then re-centre the grids at the answer
    par <- optim(par, function(q) -ll(q, centre), method = "BFGS", control = list(maxit = 1000, reltol = 1e-12))$par
    centre <- recentre(par, centre)
  }
  for (k in 1:8) {  # Newton steps with Richardson-extrapolated derivatives (numDeriv) on the fixed grids
    H <- numDeriv::hessian(function(q) ll(q, centre), par)
    step <- solve(H, numDeriv::grad(function(q) ll(q, centre), par))
    par <- par - step
    if (max(abs(step)) < 1e-10) break
  }
  H <- numDeriv::hessian(function(q) ll(q, centre), par)
  cov <- solve(-H)
  for (j in seq_len(p)) add(m$model, m$fit, "likelihood", "fixed", terms[j], par[j], sqrt(cov[j, j]))
  add(m$model, m$fit, "likelihood", "varcomp", "residual", exp(2 * par[p + 1]))
  add(m$model, m$fit, "likelihood", "varcomp", "var(Intercept)", exp(2 * par[p + 2]))
  add(m$model, m$fit, "likelihood", "fit", "logLik", ll(par, centre))
  add(m$model, m$fit, "likelihood", "fit", "ncensored", sum(cens))
  if (!any(cens)) {  # no non-detect: the ML linear mixed model, whose SEs are conditional on the variances
    fit <- lmer(as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "), "+ (1 | group)")), d, REML = FALSE,
                control = ctrl)
    cf <- summary(fit)$coefficients
    for (j in seq_len(p)) add(m$model, m$fit, "lme4_ML", "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2])
    add(m$model, m$fit, "lme4_ML", "fit", "logLik", as.numeric(logLik(fit)))
  }
}

# --- the fits -----------------------------------------------------------------------------------------------
pool <- list()
for (i in seq_len(nrow(man))) {
  m <- man[i, ]
  d <- block(m$file, m$part)
  if (!is.na(m$delta) && m$delta != 0) d$y <- d$y + m$delta * d$mask
  terms <- strsplit(m$terms, ";", fixed = TRUE)[[1]]
  xs <- paste0("x", seq_along(terms) - 1)
  rand <- if (is.na(m$random) || m$random == "") integer(0) else as.integer(strsplit(as.character(m$random), ";")[[1]])
  d$group <- factor(d$group)
  fixed <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + ")))
  cat(sprintf("%s fit %d (%s, %d rows)\n", m$model, m$fit, m$engine, nrow(d)))
  if (m$engine == "lmer") {
    r <- lmer_fit(m, d, xs, terms, rand)
    if (m$model %in% c("primary_mi", "tipping_point")) {
      key <- sprintf("%s|%g", m$model, m$delta)
      pool[[key]] <- c(pool[[key]], list(c(r, list(terms = terms))))
    }
  } else if (m$engine == "glmer") {
    # glmer's vcov() inverts a Hessian of its deviance by central differences with a fixed step of 1e-4
    # (lme4's deriv12); on these rows that moves its SEs by up to 1.4e-4 (relative). The same deviance
    # function (devFunOnly), differentiated at glmer's optimum by numDeriv's Richardson extrapolation, gives
    # the SEs of source glmer_nAGQ<n>_hessian.
    for (q in c(25, 100)) {
      gctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12, optCtrl = list(maxfun = 1e5))
      gf <- update(fixed, ~ . + (1 | group))
      fit <- glmer(gf, d, family = binomial, nAGQ = q, control = gctrl)
      cf <- summary(fit)$coefficients
      src <- sprintf("glmer_nAGQ%d", q)
      for (j in seq_along(xs)) add(m$model, m$fit, src, "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2])
      add(m$model, m$fit, src, "varcomp", "var(Intercept)", as.data.frame(VarCorr(fit))$vcov[1])
      add(m$model, m$fit, src, "fit", "logLik", as.numeric(logLik(fit)))
      dev <- glmer(gf, d, family = binomial, nAGQ = q, control = gctrl, devFunOnly = TRUE)
      V <- 2 * solve(numDeriv::hessian(dev, c(getME(fit, "theta"), fixef(fit))))
      for (j in seq_along(xs)) add(m$model, m$fit, paste0(src, "_hessian"), "fixed", terms[j], cf[xs[j], 1],
                                   sqrt(V[j + 1, j + 1]))
    }
  } else if (m$engine == "geeglm_binomial") {
    singletons <- all(table(d$group) == 1)
    d$id <- as.integer(d$group)
    d <- d[order(d$id, seq_len(nrow(d))), ]
    fit <- geeglm(fixed, data = d, id = id, family = binomial,
                  corstr = if (singletons) "independence" else m$correlation)
    cf <- summary(fit)$coefficients
    for (j in seq_along(xs)) add(m$model, m$fit, "geeglm", "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2])
    if (!singletons) add(m$model, m$fit, "geeglm", "corr", "alpha", summary(fit)$corr[1, 1])
    add(m$model, m$fit, "geeglm", "scale", "phi", summary(fit)$dispersion[1, 1])
  } else if (m$engine == "geeglm_gaussian") {
    d$id <- as.integer(d$group)  # geese wants numeric ids, sorted, with waves inside each
    d <- d[order(d$id, d$wave), ]
    gaps <- any(tapply(d$wave, d$id, function(w) any(diff(w) != 1)))
    if (gaps && m$correlation == "unstructured") {
      # geepack 1.3.9 segfaults (geese.fit) on an unstructured correlation when a patient misses a session
      # between two rated ones; the demo has such patients. The kind's reference is Beat the Blues
      # (gee_unstructured_reference.R), whose dropout is monotone.
      add(m$model, m$fit, "geeglm", "skipped", "intermittent missing sessions", NA)
      next
    }
    fit <- geeglm(fixed, data = d, id = id, waves = wave, family = gaussian, corstr = m$correlation)
    cf <- summary(fit)$coefficients
    for (j in seq_along(xs)) add(m$model, m$fit, "geeglm", "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2])
    a <- summary(fit)$corr
    for (r in seq_len(nrow(a))) add(m$model, m$fit, "geeglm", "corr", rownames(a)[r], a[r, 1])
    add(m$model, m$fit, "geeglm", "scale", "phi", summary(fit)$dispersion[1, 1])
  } else if (m$engine == "gls") {
    # kind mmrm (unstructured covariance across sessions): nlme::gls with corSymm + varIdent, as the mmrm
    # package documents for SAS's type=UN; gls's tolerances tightened (its defaults stop ~1e-7 short in -2 log L)
    d <- d[order(d$group, d$wave), ]
    gctl <- glsControl(tolerance = 1e-10, msTol = 1e-12, maxIter = 500, msMaxIter = 500)
    fit <- gls(fixed, d, correlation = corSymm(form = ~ wave | group), weights = varIdent(form = ~ 1 | wave),
               method = if (isTRUE(m$reml)) "REML" else "ML", control = gctl)
    cf <- summary(fit)$tTable
    for (j in seq_along(xs)) add(m$model, m$fit, "gls", "fixed", terms[j], cf[xs[j], 1], cf[xs[j], 2])
    add(m$model, m$fit, "gls", "fit", "logLik", as.numeric(logLik(fit)))
    add(m$model, m$fit, "gls", "fit", "nobs", nrow(d))
  } else if (m$engine == "tobit") {
    tobit_reference(m, d, xs, terms)
  }
}

# --- Rubin's rules with Barnard-Rubin df over the imputations (per model and delta) -------------------------
for (key in names(pool)) {
  fits <- pool[[key]]
  parts <- strsplit(key, "|", fixed = TRUE)[[1]]
  mm <- length(fits)
  Q <- do.call(rbind, lapply(fits, `[[`, "est"))
  U <- do.call(rbind, lapply(fits, function(f) f$se^2))
  terms <- fits[[1]]$terms
  nu_com <- fits[[1]]$nobs - length(terms)
  qbar <- colMeans(Q); ubar <- colMeans(U); b <- apply(Q, 2, var)
  tot <- ubar + (1 + 1 / mm) * b
  lam <- (1 + 1 / mm) * b / tot
  nu_old <- (mm - 1) / lam^2
  nu_obs <- (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam)
  df <- nu_old * nu_obs / (nu_old + nu_obs)
  for (j in seq_along(terms)) add(parts[1], as.numeric(parts[2]), "rubin", "pooled", terms[j], qbar[j], sqrt(tot[j]), df[j])
  # the same with each fit's CR2 sandwich and the mean of its Satterthwaite df as the complete-data df
  cr2 <- lapply(fits, function(f) {
    vc <- vcovCR(as(f$fit, "lmerMod"), type = "CR2")
    list(u = diag(as.matrix(vc))[f$xs], df = coef_test(as(f$fit, "lmerMod"), vcov = vc, test = "Satterthwaite")$df_Satt)
  })
  U <- do.call(rbind, lapply(cr2, `[[`, "u"))
  nu_com <- colMeans(do.call(rbind, lapply(cr2, `[[`, "df")))
  ubar <- colMeans(U)
  tot <- ubar + (1 + 1 / mm) * b
  lam <- (1 + 1 / mm) * b / tot
  nu_old <- (mm - 1) / lam^2
  nu_obs <- (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam)
  df <- nu_old * nu_obs / (nu_old + nu_obs)
  for (j in seq_along(terms)) add(parts[1], as.numeric(parts[2]), "rubin_cr2", "pooled", terms[j], qbar[j], sqrt(tot[j]), df[j])
}

res <- do.call(rbind, out)
if (length(only)) {
  old <- read.csv("demo_reference.csv", stringsAsFactors = FALSE)
  res <- rbind(old[!old$model %in% only, ], res)
}
write.csv(res, "demo_reference.csv", row.names = FALSE)
cat(nrow(res), "rows written to demo_reference.csv\n")
