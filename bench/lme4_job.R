# lme4 side of the mixcli benchmark (bench/run.py spawns this with Rscript and
# times the whole process: R start-up, reading the CSV, fitting, printing).
#
#   Rscript bench/lme4_job.R fit     DATA.csv FORMULA            # one REML fit
#   Rscript bench/lme4_job.R fit-ml  DATA.csv FORMULA            # one ML fit
#   Rscript bench/lme4_job.R glmer-binomial DATA.csv FORMULA     # one glmer fit (Laplace; or glmer-poisson)
#   Rscript bench/lme4_job.R glmmtmb-fit DATA.csv FORMULA        # one glmmTMB REML fit (ar1 etc.)
#   Rscript bench/lme4_job.R compare DATA.csv NAME=FORMULA ...   # anova() of REML fits
#   Rscript bench/lme4_job.R compare-details DATA.csv NAME=FORMULA ...
#
# "compare" is what an R user types: REML fits, then anova(M1, M2, ...), which
# refits every model by ML. "compare-details" (run once, untimed) also calls
# refitML() itself to report the ML refits' evaluation counts and criteria,
# which anova() does not return.
#
# Besides lme4's usual printed output, machine-readable lines go to stdout:
#   BENCH<TAB>fit<TAB>name<TAB>method<TAB>criterion<TAB>feval<TAB>nobs
#   BENCH<TAB>anova<TAB>name<TAB>npar<TAB>deviance<TAB>logLik
# where criterion is the REML criterion (-2 REML log-likelihood) of a REML fit
# or the deviance (-2 log-likelihood) of an ML fit, as mixcli's "criterion"
# (for glmer: -2 logLik, the Laplace approximation it minimises).

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: lme4_job.R fit|compare|compare-details DATA FORMULA...")
mode <- args[[1]]
path <- args[[2]]
specs <- args[-(1:2)]

suppressPackageStartupMessages(library(lme4))

d <- read.csv(path)

criterion <- function(m) {
  cmp <- getME(m, "devcomp")$cmp
  if (isREML(m)) unname(cmp[["REML"]]) else unname(cmp[["dev"]])
}

report_fit <- function(name, m) {
  cat(sprintf("BENCH\tfit\t%s\t%s\t%.10f\t%d\t%d\n", name,
              if (isREML(m)) "REML" else "ML", criterion(m),
              as.integer(m@optinfo$feval), nobs(m)))
}

if (mode %in% c("fit", "fit-ml")) {
  m <- lmer(as.formula(specs[[1]]), data = d, REML = mode == "fit")
  print(summary(m))
  report_fit("fit", m)
} else if (mode %in% c("glmer-binomial", "glmer-poisson")) {
  fam <- if (mode == "glmer-binomial") binomial else poisson
  # text columns as factors (read.csv leaves them character; glmer needs a factor response)
  d[] <- lapply(d, function(x) if (is.character(x)) factor(x) else x)
  m <- glmer(as.formula(specs[[1]]), data = d, family = fam)
  print(summary(m))
  cat(sprintf("BENCH\tfit\tfit\tLaplace\t%.10f\t%d\t%d\n", -2 * as.numeric(logLik(m)),
              as.integer(m@optinfo$feval), nobs(m)))
} else if (mode == "glmmtmb-fit") {
  # glmmTMB (structured covariances lme4 does not have): one REML fit from its defaults
  suppressPackageStartupMessages(library(glmmTMB))
  m <- glmmTMB(as.formula(specs[[1]]), data = d, REML = TRUE)
  print(summary(m))
  cat(sprintf("BENCH\tfit\tfit\tREML\t%.10f\t%d\t%d\n", -2 * as.numeric(logLik(m)),
              as.integer(m$fit$evaluations[["function"]]), nobs(m)))
} else if (mode %in% c("compare", "compare-details")) {
  eq <- regexpr("=", specs, fixed = TRUE)
  names <- substr(specs, 1, eq - 1)
  formulas <- substr(specs, eq + 1, nchar(specs))
  env <- environment()
  for (i in seq_along(specs)) {
    assign(names[[i]], lmer(as.formula(formulas[[i]]), data = d, REML = TRUE), envir = env)
  }
  # anova(M14, M17, M16) with the models' own names, as typed at the prompt.
  a <- eval(as.call(c(as.name("anova"), lapply(names, as.name))), envir = env)
  print(a)
  for (n in names) report_fit(n, get(n, envir = env))
  for (r in rownames(a)) {
    cat(sprintf("BENCH\tanova\t%s\t%d\t%.10f\t%.10f\n", r, as.integer(a[r, "npar"]),
                a[r, "deviance"], a[r, "logLik"]))
  }
  if (mode == "compare-details") {
    for (n in names) report_fit(n, refitML(get(n, envir = env)))
  }
} else {
  stop("unknown mode: ", mode)
}
