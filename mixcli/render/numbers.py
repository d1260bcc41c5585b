"""Number formatting shared by the renderers."""

from __future__ import annotations

import math


def json_number(x) -> float | int | None:
    """A float for JSON: NaN and infinities become null (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def signif(x: float, digits: int = 4) -> str:
    """R's ``format(x, digits=)`` for one number: ``digits`` significant digits, fixed notation."""
    if x is None or not math.isfinite(x):
        return "NaN" if x is not None and math.isnan(x) else ("" if x is None else str(x))
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(digits - 1 - magnitude, 0)
    return f"{x:.{decimals}f}"


def aligned(values: list[float], digits: int = 4) -> list[str]:
    """Format a column as R does: the decimals needed for ``digits`` significant digits of
    the smallest non-zero magnitude (capped), the same for every entry."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return [signif(v, digits) for v in values]
    smallest = min(finite)
    decimals = min(max(digits - 1 - math.floor(math.log10(smallest)), 0), 8)
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif not math.isfinite(v):
            out.append("NaN" if math.isnan(v) else str(v))
        else:
            out.append(f"{v:.{decimals}f}")
    return out


def stars(p: float | None) -> str:
    """R's significance codes."""
    if p is None or math.isnan(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def format_p(p: float | None) -> str:
    """R's format.pval: 4 significant digits, '< 2.2e-16' below machine precision."""
    if p is None or math.isnan(p):
        return ""
    if p < 2.2e-16:
        return "< 2.2e-16"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.3e}"


def format_p_coef(p: float | None) -> str:
    """A p-value as R's printCoefmat shows it: 3 significant digits, '< 2e-16' below machine precision."""
    if p is None or p != p:
        return ""
    if p < 2.2e-16:
        return "< 2e-16"
    return f"{p:.3g}"


SIGNIF_CODES = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def footer(notes: list[str], legend: bool = True) -> list:
    """What goes under a table of tests: R's significance legend, then the notes in yellow."""
    from rich.text import Text

    out = [Text("---"), Text(SIGNIF_CODES)] if legend else []
    if notes:
        out.append(Text(""))
        out.extend(Text(line, style="yellow") for line in notes)
    return out
