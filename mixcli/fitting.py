"""The one way a model frame is fitted: lmer's stages (``model.Model``) for a linear mixed model,
glmer's (``glmm.GlmmModel``) for a frame with a family. The API, the command line, compare,
ranova and reduce all come here; the bootstrap and the profile refit through the same models'
criteria."""

from __future__ import annotations

from .control import DEFAULT, Control


def fit_frame(frame, reml: bool = True, nagq: int = 1, progress=None, control: Control | None = None,
              structure=None):
    """Fit ``frame`` (``frame.model_frame``): by REML (or ML with ``reml=False``) without a family;
    by maximum likelihood with ``nagq`` (0, 1 = Laplace, up to 25) with one; with the settings
    of ``control`` (``control.Control``; default ``control.DEFAULT``), which the result keeps
    (``result.control``). ``structure``: an LMM's structure built already (from a dataset's
    sums, ``distributed.py``), else the frame's."""
    control = control or DEFAULT
    if frame.family is None and frame.dispersion is not None:
        from .model import fit_dispersion

        return fit_dispersion(frame, reml=reml, control=control, progress=progress)
    if frame.family is None:
        from .model import Model

        return Model(frame, control, structure=structure).fit(reml=reml, progress=progress)
    from .glmm import GlmmModel

    result = GlmmModel(frame, control).fit(nagq=nagq, progress=progress)
    result.fitter = fit_frame
    return result


def fit(data, formula, reml: bool = True, family=None, link: str | None = None, nagq: int = 1, weights=None,
        contrasts: str = "treatment", progress=None, control: Control | None = None, dispformula: str | None = None):
    """``formula`` fitted to ``data`` (a DataFrame, a mapping of columns or a ``Table``): lmer's
    model without a family (or ``"gaussian"``), glmer's with one (a ``Family``, or its name with
    ``link``); ``dispformula="~ f"`` gives a linear mixed model a residual SD per level of f
    (glmmTMB's dispformula, nlme's varIdent)."""
    from .family import family as make_family
    from .frame import dispersion_factor, model_frame
    from .table import Table

    name = getattr(family, "name", family)
    fam = None if name is None or name == "gaussian" else (
        make_family(family, link) if isinstance(family, str) else family)
    dispersion = None if dispformula is None else dispersion_factor(dispformula)
    frame = model_frame(Table.from_mapping(data), formula, family=fam, weights=weights, contrasts=contrasts,
                        dispersion=dispersion)
    return fit_frame(frame, reml=reml, nagq=nagq, progress=progress, control=control)
