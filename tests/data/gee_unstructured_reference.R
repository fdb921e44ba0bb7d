# Reference numbers for the marginal model (kind gee, tests/test_models_sensitivity.py), made with R
# (Debian r-cran-geepack) by:  cd tests/data && Rscript gee_unstructured_reference.R
# Linear GEE on Beat the Blues: one mean per visit, unstructured working correlation across the five
# visits (waves), robust SEs. Writes gee_unstructured_reference.csv (kind, term, estimate, se).
suppressMessages(library(geepack))
bt <- read.csv("btheb_long.csv")
bt$treatment <- relevel(factor(bt$treatment), "TAU")
bt$drug <- relevel(factor(bt$drug), "No")
bt$length <- relevel(factor(bt$length), "<6m")
bt <- bt[!is.na(bt$bdi), ]
bt <- bt[order(bt$id, bt$time), ]
times <- sort(unique(bt$time))
bt$wave <- match(bt$time, times)
fit <- geeglm(bdi ~ bdi_pre + factor(time) + treatment + drug + length, data = bt, id = id,
              waves = wave, family = gaussian, corstr = "unstructured")
cf <- summary(fit)$coefficients
out <- data.frame(kind = "fixed", term = rownames(cf), estimate = cf[, 1], se = cf[, 2])
a <- summary(fit)$corr
out <- rbind(out, data.frame(kind = "corr", term = rownames(a), estimate = a[, 1], se = a[, 2]))
out <- rbind(out, data.frame(kind = "scale", term = "phi", estimate = summary(fit)$dispersion[1, 1], se = NA))
write.csv(out, "gee_unstructured_reference.csv", row.names = FALSE)
print(out, digits = 10)
