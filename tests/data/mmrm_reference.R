# Full-precision R reference for the MMRM engine (src/ketastats/models/engines/mmrm.py).
#
#   Rscript tests/data/mmrm_reference.R   (from the repository root; writes tests/data/mmrm_reference.csv)
#
# Data: tests/data/mmrm/fev_data.csv (R mmrm's fev_data). For every model of the SAS listings in
# tests/data/mmrm/ two independent fits:
#  - "dense": the (restricted) likelihood written out here with dense per-patient matrices in SAS's
#    parametrization, maximised by nlminb from several starts and polished by Newton steps with
#    numDeriv's Richardson Hessian; Satterthwaite df from numDeriv derivatives of Var(l'beta) and the
#    inverse observed information (no analytic derivative is shared with the Python engine);
#  - "pkg": nlme::gls (corSymm + varIdent for us, corCompSymm, corAR1, + varIdent for csh/ar1h) where gls
#    has the structure.
# Kenward-Roger: an MMRM with a homogeneous cs covariance and positive correlation is the random-intercept
# LMM; pbkrtest::vcovAdj and get_Lb_ddf on the lmer fit give the adjusted covariance and the df ("kr").
# Empirical (sandwich, CR0) SEs from the dense fit ("empirical").
suppressPackageStartupMessages({library(nlme); library(lme4); library(pbkrtest); library(numDeriv)})
options(digits = 15)
d <- read.csv("tests/data/mmrm/fev_data.csv", stringsAsFactors = FALSE)
d <- d[!is.na(d$FEV1), ]
d$SEX <- relevel(factor(d$SEX), ref = "Male")
d$ARMCD <- relevel(factor(d$ARMCD), ref = "PBO")
d$RACE <- relevel(factor(d$RACE), ref = "Asian")
d$AVISIT <- factor(d$AVISIT, levels = c("VIS1", "VIS2", "VIS3", "VIS4"))
d <- d[order(d$USUBJID, d$VISITN), ]
out <- list()
put <- function(model, source, quantity, term, value) {
  out[[length(out) + 1]] <<- data.frame(model = model, source = source, quantity = quantity, term = term,
                                        value = value, stringsAsFactors = FALSE)
}

# ---- covariance structures in SAS's parametrization (T visits, positions 1..T) ----
sigma_of <- function(type, th, T) {
  D <- abs(outer(1:T, 1:T, "-"))
  het <- function(v, C) diag(sqrt(v)) %*% C %*% diag(sqrt(v))
  switch(type,
    us = { S <- matrix(0, T, T); k <- 1
           for (i in 1:T) for (j in 1:i) { S[i, j] <- th[k]; S[j, i] <- th[k]; k <- k + 1 }; S },
    cs = th[1] * matrix(1, T, T) + th[2] * diag(T),
    csh = het(th[1:T], ifelse(D == 0, 1, th[T + 1])),
    ar1 = th[1] * th[2]^D,
    ar1h = het(th[1:T], th[T + 1]^D),
    toeph = het(th[1:T], ifelse(D == 0, 1, th[T + pmax(D, 1)])),
    adh = { C <- diag(T); r <- th[(T + 1):(2 * T - 1)]
            for (a in 1:T) for (b in 1:T) if (a < b) { C[a, b] <- prod(r[a:(b - 1)]); C[b, a] <- C[a, b] }
            het(th[1:T], C) })
}
kinds_of <- function(type, T) switch(type,
  us = { k <- c(); for (i in 1:T) for (j in 1:i) k <- c(k, if (i == j) "var" else "cov"); k },
  cs = c("cov", "var"), csh = c(rep("var", T), "corr"), ar1 = c("var", "corr"), ar1h = c(rep("var", T), "corr"),
  toeph = c(rep("var", T), rep("corr", T - 1)), adh = c(rep("var", T), rep("corr", T - 1)))
labels_of <- function(type, T) switch(type,
  us = { l <- c(); for (i in 1:T) for (j in 1:i) l <- c(l, sprintf("UN(%d,%d)", i, j)); l },
  cs = c("CS", "Residual"), ar1 = c("Residual", "AR(1)"),
  csh = c(sprintf("Var(%d)", 1:T), "CSH"), ar1h = c(sprintf("Var(%d)", 1:T), "ARH(1)"),
  toeph = c(sprintf("Var(%d)", 1:T), sprintf("TOEPH(%d)", 1:(T - 1))),
  adh = c(sprintf("Var(%d)", 1:T), sprintf("Rho(%d)", 1:(T - 1))))
to_nat <- function(phi, kinds) ifelse(kinds == "var", exp(phi), ifelse(kinds == "corr", tanh(phi), phi))
to_free <- function(th, kinds) ifelse(kinds == "var", log(th), ifelse(kinds == "corr", atanh(th), th))

# dense -2 (restricted) log-likelihood; visit positions vis (1..T) per row
make_dense <- function(y, X, subj, vis, grp, type, T, reml) {
  ids <- unique(subj)
  rows <- split(seq_along(y), factor(subj, levels = ids))
  gi <- sapply(rows, function(r) grp[r[1]])
  G <- max(gi); q <- length(kinds_of(type, T))
  core <- function(th) {
    p <- ncol(X); A <- matrix(0, p, p); b <- rep(0, p); ld <- 0
    Vinv <- vector("list", length(rows))
    for (i in seq_along(rows)) {
      r <- rows[[i]]; g <- gi[i]
      S <- sigma_of(type, th[((g - 1) * q + 1):(g * q)], T)[vis[r], vis[r], drop = FALSE]
      ch <- tryCatch(chol(S), error = function(e) NULL)
      if (is.null(ch)) return(NULL)
      Wi <- chol2inv(ch); Vinv[[i]] <- Wi
      ld <- ld + 2 * sum(log(diag(ch)))
      Xi <- X[r, , drop = FALSE]
      A <- A + t(Xi) %*% Wi %*% Xi; b <- b + t(Xi) %*% Wi %*% y[r]
    }
    beta <- solve(A, b); rss <- 0
    for (i in seq_along(rows)) { r <- rows[[i]]; e <- y[r] - X[r, , drop = FALSE] %*% beta
      rss <- rss + t(e) %*% Vinv[[i]] %*% e }
    n <- length(y); p <- ncol(X)
    f <- ld + rss + if (reml) (n - p) * log(2 * pi) + determinant(A)$modulus else n * log(2 * pi)
    list(f = as.numeric(f), beta = as.numeric(beta), Phi = solve(A), Vinv = Vinv)
  }
  list(core = core, f = function(th) { r <- core(th); if (is.null(r)) Inf else r$f }, rows = rows,
       q = q, G = G)
}

fit_dense <- function(model, y, X, subj, vis, grp, type, T, reml, start) {
  dn <- make_dense(y, X, subj, vis, grp, type, T, reml)
  kinds <- rep(kinds_of(type, T), dn$G)
  obj <- function(phi) dn$f(to_nat(phi, kinds))
  best <- NULL
  for (s in start) {
    o <- nlminb(to_free(s, kinds), obj, control = list(eval.max = 5000, iter.max = 3000, rel.tol = 1e-14))
    if (is.null(best) || o$objective < best$objective) best <- o
  }
  phi <- best$par
  for (k in 1:6) {  # Newton polish with Richardson derivatives
    g <- numDeriv::grad(obj, phi); H <- numDeriv::hessian(obj, phi)
    step <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(step)) break
    cand <- phi - step
    if (is.finite(obj(cand)) && obj(cand) <= obj(phi)) phi <- cand else break
  }
  th <- to_nat(phi, kinds)
  cr <- dn$core(th)
  Hn <- numDeriv::hessian(dn$f, th)
  covth <- 2 * solve(Hn)
  p <- ncol(X)
  put(model, "dense", "m2loglik", "", cr$f)
  message(model, ": -2l = ", format(cr$f, digits = 12), " nlminb ", best$message)
  for (j in 1:p) {
    put(model, "dense", "beta", colnames(X)[j], cr$beta[j])
    put(model, "dense", "se", colnames(X)[j], sqrt(cr$Phi[j, j]))
    gj <- numDeriv::grad(function(t) { r <- dn$core(t); r$Phi[j, j] }, th)
    put(model, "dense", "df", colnames(X)[j], 2 * cr$Phi[j, j]^2 / as.numeric(t(gj) %*% covth %*% gj))
  }
  labs <- labels_of(type, T)
  for (k in seq_along(th)) put(model, "dense", "theta", paste0("g", (k - 1) %/% length(labs) + 1, ":",
                                                                    labs[(k - 1) %% length(labs) + 1]), th[k])
  # empirical (CR0)
  meat <- matrix(0, p, p)
  for (i in seq_along(dn$rows)) { r <- dn$rows[[i]]; e <- y[r] - X[r, , drop = FALSE] %*% cr$beta
    u <- t(X[r, , drop = FALSE]) %*% cr$Vinv[[i]] %*% e; meat <- meat + u %*% t(u) }
  Ve <- cr$Phi %*% meat %*% cr$Phi
  for (j in 1:p) put(model, "dense", "se_empirical", colnames(X)[j], sqrt(Ve[j, j]))
  invisible(th)
}

T <- 4
vis <- as.integer(d$AVISIT)
one <- rep(1L, nrow(d))
full <- FEV1 ~ ARMCD * AVISIT + RACE + SEX
X_full <- model.matrix(full, d)
X_coef <- model.matrix(FEV1 ~ ARMCD + SEX, d)
X_int <- model.matrix(FEV1 ~ 1, d)
us_start <- function(X) { e <- resid(lm(d$FEV1 ~ X - 1)); S <- diag(tapply(e, d$AVISIT, var))
  l <- c(); for (i in 1:T) for (j in 1:i) l <- c(l, S[i, j]); list(l) }
gls_out <- function(model, fit, X) {
  put(model, "pkg", "m2loglik", "", -2 * as.numeric(logLik(fit)))
  b <- coef(fit); V <- vcov(fit)
  for (j in seq_along(b)) { put(model, "pkg", "beta", colnames(X)[j], b[j]); put(model, "pkg", "se", colnames(X)[j], sqrt(V[j, j])) }
}
ctl <- glsControl(tolerance = 1e-10, msTol = 1e-12, maxIter = 500, msMaxIter = 500)

for (reml in c(TRUE, FALSE)) {
  tag <- if (reml) "reml" else "ml"; meth <- if (reml) "REML" else "ML"
  fit_dense(paste0("un_", tag), d$FEV1, X_full, d$USUBJID, vis, one, "us", T, reml, us_start(X_full))
  gls_out(paste0("un_", tag), gls(full, d, correlation = corSymm(form = ~ VISITN | USUBJID),
          weights = varIdent(form = ~ 1 | AVISIT), method = meth, control = ctl), X_full)
  fit_dense(paste0("un_coef_", tag), d$FEV1, X_coef, d$USUBJID, vis, one, "us", T, reml, us_start(X_coef))
  gls_out(paste0("un_coef_", tag), gls(FEV1 ~ ARMCD + SEX, d, correlation = corSymm(form = ~ VISITN | USUBJID),
          weights = varIdent(form = ~ 1 | AVISIT), method = meth, control = ctl), X_coef)
  fit_dense(paste0("cs_", tag), d$FEV1, X_int, d$USUBJID, vis, one, "cs", T, reml, list(c(5, 80), c(1, 85)))
  gls_out(paste0("cs_", tag), gls(FEV1 ~ 1, d, correlation = corCompSymm(form = ~ 1 | USUBJID), method = meth,
          control = ctl), X_int)
}
v4 <- c(90, 40, 35, 170)
fit_dense("csh_reml", d$FEV1, X_int, d$USUBJID, vis, one, "csh", T, TRUE, list(c(v4, 0.15)))
gls_out("csh_reml", gls(FEV1 ~ 1, d, correlation = corCompSymm(form = ~ 1 | USUBJID),
        weights = varIdent(form = ~ 1 | AVISIT), control = ctl), X_int)
fit_dense("ar1_reml", d$FEV1, X_int, d$USUBJID, vis, one, "ar1", T, TRUE, list(c(85, 0.4)))
gls_out("ar1_reml", gls(FEV1 ~ 1, d, correlation = corAR1(form = ~ VISITN | USUBJID), control = ctl), X_int)
fit_dense("ar1h_reml", d$FEV1, X_int, d$USUBJID, vis, one, "ar1h", T, TRUE, list(c(v4, 0.4)))
gls_out("ar1h_reml", gls(FEV1 ~ 1, d, correlation = corAR1(form = ~ VISITN | USUBJID),
        weights = varIdent(form = ~ 1 | AVISIT), control = ctl), X_int)
fit_dense("toeph_reml", d$FEV1, X_int, d$USUBJID, vis, one, "toeph", T, TRUE, list(c(v4, 0.4, 0.05, -0.3), c(v4, 0.2, 0, 0)))
fit_dense("adh_reml", d$FEV1, X_int, d$USUBJID, vis, one, "adh", T, TRUE, list(c(v4, 0.7, 0.1, 0.35), c(v4, 0.3, 0.3, 0.3)))
grp <- as.integer(d$ARMCD)  # 1 = PBO, 2 = TRT
fit_dense("group_cs_reml", d$FEV1, X_int, d$USUBJID, vis, grp, "cs", T, TRUE, list(c(3, 75, 9, 87), c(1, 80, 1, 80)))

# Kenward-Roger: cs = random intercept (positive covariance); pbkrtest on lmer
kr_out <- function(model, form, X) {
  m <- lmer(form, d, REML = TRUE, control = lmerControl(optimizer = "nloptwrap",
            optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12)))
  Va <- as.matrix(vcovAdj(m))
  put(model, "kr", "m2loglik", "", -2 * as.numeric(logLik(m)))
  for (j in seq_len(ncol(X))) {
    L <- matrix(0, 1, ncol(X)); L[1, j] <- 1
    put(model, "kr", "beta", colnames(X)[j], fixef(m)[j])
    put(model, "kr", "se", colnames(X)[j], sqrt(as.matrix(vcov(m))[j, j]))
    put(model, "kr", "se_kr", colnames(X)[j], sqrt(Va[j, j]))
    put(model, "kr", "df_kr", colnames(X)[j], get_Lb_ddf(m, L))
  }
  L <- diag(ncol(X))[grepl(":", colnames(X)), , drop = FALSE]
  if (nrow(L) > 1) {
    k <- KRmodcomp(m, L)
    put(model, "kr", "F_kr_interaction", "", k$test["Ftest", "stat"])
    put(model, "kr", "ddf_kr_interaction", "", k$test["Ftest", "ddf"])
  }
}
kr_out("cs_reml", FEV1 ~ 1 + (1 | USUBJID), X_int)
kr_out("cs_full_reml", FEV1 ~ ARMCD * AVISIT + RACE + SEX + (1 | USUBJID), X_full)
fit_dense("cs_full_reml", d$FEV1, X_full, d$USUBJID, vis, one, "cs", T, TRUE, list(c(5, 80)))

res <- do.call(rbind, out)
write.csv(res, "tests/data/mmrm_reference.csv", row.names = FALSE)
cat("wrote", nrow(res), "rows\n")
