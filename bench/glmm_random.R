# glmer side of the small-GLMM benchmark (bench/run.py --glmm): every model of a manifest fitted
# in this one R process, each fit timed in-process (the target compares mixcli's whole process
# with glmer's in-process time + 1 s).
#
#   Rscript bench/glmm_random.R MANIFEST.tsv
#
# MANIFEST: tab-separated name, csv, formula, family, link (no header). Prints per model
#   BENCH<TAB>glmm<TAB>name<TAB>criterion<TAB>feval<TAB>seconds<TAB>cpu_seconds
# with criterion = -2 logLik (the Laplace approximation glmer minimises; NA when glmer fails), the fit's
# wall time and its CPU time (user + system: less moved by other processes on a shared machine).

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: glmm_random.R MANIFEST.tsv")
suppressPackageStartupMessages(library(lme4))
cases <- read.delim(args[[1]], header = FALSE, stringsAsFactors = FALSE, quote = "",
                    col.names = c("name", "csv", "formula", "family", "link"))
for (i in seq_len(nrow(cases))) {
  cs <- cases[i, ]
  d <- read.csv(cs$csv)
  d[] <- lapply(d, function(x) if (is.character(x)) factor(x) else x)
  fam <- eval(call(cs$family, link = cs$link))
  t0 <- proc.time()
  m <- tryCatch(suppressWarnings(suppressMessages(glmer(as.formula(cs$formula), data = d, family = fam))),
                error = function(e) NULL)
  dt <- proc.time() - t0
  secs <- dt[["elapsed"]]
  cpu <- dt[["user.self"]] + dt[["sys.self"]]
  crit <- if (is.null(m)) NA_real_ else -2 * as.numeric(logLik(m))
  feval <- if (is.null(m)) NA_integer_ else as.integer(m@optinfo$feval)
  cat(sprintf("BENCH\tglmm\t%s\t%.10f\t%d\t%.4f\t%.4f\n", cs$name, crit, feval, secs, cpu))
}
