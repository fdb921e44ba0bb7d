# Independent reference for the decision estimators (issue 17): IPW and AIPW by geepack.
#
#   cd tests/data && Rscript decision_reference.R      (after decision_rows.py)
#
# Reads decision_points.csv (the eligible decision points of a simulated cohort, written by
# ketastats' own steps) and, for each decision (postpone; reduced_dose among given infusions)
# and outcome (next MADRS; response at the next rating), computes from scratch in R:
#   - the propensity by logistic regression (glm.fit) on the confounders;
#   - stabilized weights P(A = a) / P(A = a | X), truncated at their 1st and 99th percentiles
#     (quantile type 7, numpy's default), and the IPW estimate and its sandwich SE as the A
#     coefficient of geeglm(y ~ A, weights = w, id = patient, corstr = "independence");
#   - the outcome regression in each arm (glm.fit, gaussian or binomial for response), the AIPW
#     pseudo-outcomes m1 - m0 + A (y - m1) / e - (1 - A) (y - m0) / (1 - e) with the untruncated
#     propensity, and their mean and sandwich SE from geeglm(phi ~ 1, id = patient);
#   - the g-formula point estimate mean(m1 - m0) (its SE is checked in Python by another route);
#   - for IPW also sandwich::vcovCL on the weighted glm (HC0, no cluster adjustment) as a
#     second sandwich.
# Writes decision_reference.csv: decision, outcome, estimator, estimate, se, n.
suppressPackageStartupMessages({
  library(geepack)
  library(sandwich)
})

pts <- read.csv("decision_points.csv", stringsAsFactors = FALSE)
pts$severity <- factor(pts$severity, levels = c("mild", "moderate", "severe"))
pts$illness_type <- factor(pts$illness_type,
  levels = c("respiratory", "influenza_like", "gastrointestinal", "other_febrile", "other"))
conf <- c("severity", "illness_type", "febrile", "days_since_onset", "previous_score",
          "baseline_score", "progress", "days_since_previous", "illness_medication")
rhs <- paste(conf, collapse = " + ")

analyse <- function(decision, outcome, binary) {
  d <- pts[complete.cases(pts[, c(decision, outcome, conf)]), ]
  d <- d[order(d$patient_id, d$session), ]
  d$A <- d[[decision]]
  d$y <- d[[outcome]]
  d$id <- as.integer(factor(d$patient_id))
  d <- droplevels(d)
  # the confounders' design; aliased columns (febrile next to the illness types, a level absent
  # in an arm) are found by R's QR (lm's tolerance, 1e-7) and left out before the glm fits, whose
  # own rank check is too tight at the convergence tolerance used here
  X <- model.matrix(as.formula(paste("~", rhs)), d)
  fit_on <- function(rows, y, fam) {
    Xr <- X[rows, , drop = FALSE]
    q <- qr(Xr)
    keep <- sort(q$pivot[seq_len(q$rank)])
    fit <- glm.fit(Xr[, keep, drop = FALSE], y[rows], family = fam,
                   control = glm.control(epsilon = 1e-12, maxit = 100))
    b <- numeric(ncol(X))
    b[keep] <- coef(fit)
    fam$linkinv(drop(X %*% b))
  }
  e <- fit_on(rep(TRUE, nrow(d)), d$A, binomial())
  p1 <- mean(d$A)
  sw <- ifelse(d$A == 1, p1 / e, (1 - p1) / (1 - e))
  q <- quantile(sw, c(0.01, 0.99), type = 7)
  d$w <- pmin(pmax(sw, q[1]), q[2])
  ipw <- geeglm(y ~ A, weights = w, id = id, corstr = "independence", data = d)
  ipw_glm <- glm(y ~ A, weights = w, data = d)
  ipw_cl <- sqrt(vcovCL(ipw_glm, cluster = ~id, type = "HC0", cadjust = FALSE)["A", "A"])
  # outcome regression in each arm, predicted for every point: a column without variation in an
  # arm (a level seen only in the other arm) is aliased there and contributes nothing
  fam <- if (binary) binomial() else gaussian()
  m1 <- fit_on(d$A == 1, d$y, fam)
  m0 <- fit_on(d$A == 0, d$y, fam)
  d$phi <- m1 - m0 + d$A * (d$y - m1) / e - (1 - d$A) * (d$y - m0) / (1 - e)
  aipw <- geeglm(phi ~ 1, id = id, corstr = "independence", data = d)
  data.frame(
    decision = decision, outcome = outcome,
    estimator = c("ipw", "ipw_vcovCL", "aipw", "gformula"),
    estimate = c(coef(ipw)[["A"]], coef(ipw_glm)[["A"]], coef(aipw)[[1]], mean(m1 - m0)),
    se = c(summary(ipw)$coefficients["A", "Std.err"], ipw_cl,
           summary(aipw)$coefficients[1, "Std.err"], NA),
    n = nrow(d)
  )
}

out <- rbind(
  analyse("postpone", "y_next", FALSE),
  analyse("reduced_dose", "y_next", FALSE),
  analyse("postpone", "response_next", TRUE),
  analyse("reduced_dose", "response_next", TRUE)
)
out$estimate <- sprintf("%.12g", out$estimate)
out$se <- ifelse(is.na(out$se), "", sprintf("%.12g", out$se))
write.csv(out, "decision_reference.csv", row.names = FALSE, quote = FALSE)
cat(sprintf("geepack %s, sandwich %s, %s\n", packageVersion("geepack"), packageVersion("sandwich"),
            R.version.string))
