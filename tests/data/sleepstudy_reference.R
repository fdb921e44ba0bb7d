# Reference numbers for tests/test_lme4_reference.py, tests/test_fast_engine.py and others: lme4's sleepstudy
# (Belenky et al. 2003) and its fits, made with R 4.2 and Debian r-cran-lme4 1.1-31 by:
#   cd tests/data && Rscript sleepstudy_reference.R
# Writes sleepstudy.csv (Subject, Days, Reaction) and sleepstudy_reference.csv (dataset, model, method, kind, term,
# estimate, se): Reaction ~ Days + (1|Subject) (model RI) and + (1+Days|Subject) (model RS), REML and ML.
# Rerun with lme4 1.1-31 it reproduces both files byte for byte (docs/testing.md).
suppressMessages(library(lme4))
data(sleepstudy)
write.csv(sleepstudy[,c("Subject","Days","Reaction")], "sleepstudy.csv", row.names=FALSE)
out <- list()
for (reml in c(TRUE, FALSE)) {
  for (m in c("RI","RS")) {
    f <- if (m=="RI") Reaction ~ Days + (1|Subject) else Reaction ~ Days + (1+Days|Subject)
    fit <- lmer(f, sleepstudy, REML=reml, control=lmerControl(optimizer="bobyqa", optCtrl=list(maxfun=1e5)))
    meth <- if (reml) "REML" else "ML"
    cf <- summary(fit)$coefficients
    for (i in seq_len(nrow(cf))) out[[length(out)+1]] <- data.frame(dataset="sleepstudy", model=m, method=meth, kind="fixed", term=rownames(cf)[i], estimate=cf[i,1], se=cf[i,2])
    vc <- as.data.frame(VarCorr(fit))
    for (i in seq_len(nrow(vc))) {
      term <- if (is.na(vc$var1[i])) "residual_var" else if (is.na(vc$var2[i])) paste0("var(",vc$var1[i],")") else paste0("cov(",vc$var1[i],",",vc$var2[i],")")
      out[[length(out)+1]] <- data.frame(dataset="sleepstudy", model=m, method=meth, kind="varcomp", term=term, estimate=vc$vcov[i], se=NA)
    }
    out[[length(out)+1]] <- data.frame(dataset="sleepstudy", model=m, method=meth, kind="fit", term="logLik", estimate=as.numeric(logLik(fit)), se=NA)
  }
}
res <- do.call(rbind, out)
write.csv(res, "sleepstudy_reference.csv", row.names=FALSE)
print(res, digits=10)
