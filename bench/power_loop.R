# The R side of bench/run.py's power jobs: what simr's powerSim does, as a loop (simr itself is
# not installed): simulate from the pilot fit with changed parameters (lme4's simulate,
# use.u = FALSE), refit each response with lmerTest::lmer, count Pr(>|t|) < alpha.
#
#   Rscript bench/power_loop.R DATA.csv FORMULA TERM NSIM SEED [fixef:NAME=VALUE ...]
#                              [theta:V1,V2,...] [sigma:VALUE]
#
# theta is lme4's (getME(m, "theta") order) and replaces the pilot's, as sigma does.
# Prints "BENCH<TAB>power<TAB>rejected<TAB>nsim<TAB>loop seconds".

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) stop("usage: power_loop.R DATA FORMULA TERM NSIM SEED [fixef:NAME=VALUE] [theta:...] [sigma:V]")
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
d <- read.csv(args[[1]])
formula <- as.formula(args[[2]])
term <- args[[3]]
nsim <- as.integer(args[[4]])
set.seed(as.integer(args[[5]]))
pilot <- lme4::lmer(formula, data = d, REML = TRUE)
beta <- fixef(pilot)
theta <- getME(pilot, "theta")
sigma <- sigma(pilot)
for (a in args[-(1:5)]) {
  kind <- sub(":.*", "", a)
  value <- sub("^[^:]*:", "", a)
  if (kind == "fixef") {
    beta[sub("=.*", "", value)] <- as.numeric(sub(".*=", "", value))
  } else if (kind == "theta") {
    theta[] <- as.numeric(strsplit(value, ",")[[1]])
  } else if (kind == "sigma") {
    sigma <- as.numeric(value)
  }
}
response <- all.vars(formula)[1]
ys <- simulate(pilot, nsim = nsim, newparams = list(beta = beta, theta = theta, sigma = sigma), use.u = FALSE)
t0 <- proc.time()[["elapsed"]]
rejected <- 0
for (i in seq_len(nsim)) {
  d[[response]] <- ys[[i]]
  m <- suppressMessages(suppressWarnings(lmerTest::lmer(formula, data = d, REML = TRUE)))
  p <- coef(summary(m))[term, "Pr(>|t|)"]
  if (!is.na(p) && p < 0.05) rejected <- rejected + 1
}
cat(sprintf("BENCH\tpower\t%d\t%d\t%.3f\n", rejected, nsim, proc.time()[["elapsed"]] - t0))
