"""Output formats: ``table`` (rich, for people), ``json`` and ``csv`` (for pipelines).

One module per kind of result, each with the same three functions:
``table_renderables(...)`` (a list of rich renderables), ``render_json(...)``
and ``render_csv(...)`` (text):

* ``fit`` — fitted models (``summary(lmer)``);
* ``ranef`` — conditional modes of the random effects;
* ``compare`` — likelihood-ratio comparisons (``anova``);
* ``anova`` — F tests of the fixed-effect terms (lmerTest's ``anova(m)``);
* ``ranova`` — lmerTest's tests of reducing each random-effects term;
* ``reduce`` — a model reduction, step by step, and the final model;
* ``numbers`` — number formatting shared by all of them.

Renderers take result objects and return text; nothing here fits or reads data.
"""
