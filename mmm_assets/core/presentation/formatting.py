"""Numbers as people read them, shared by the report and the Dagster metadata."""


def number(value: float) -> str:
    """12,345 for large values, four significant digits for small ones, empty for NaN."""
    if value != value:
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
