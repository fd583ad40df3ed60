"""Metadata a person reads in the Dagster UI: tables as markdown, schemas, plots."""


import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from mmm_assets.core.formatting import cell
from mmm_assets.core.presentation.plots import markdown_image


def table_md(frame: pd.DataFrame) -> MetadataValue:
    """A small DataFrame as a markdown table, numbers formatted for reading. Cells are not padded to align: the UI
    renders markdown up to ~1,000 characters inline and longer entries behind a "[Show Markdown]" button."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(cell)
        elif pd.api.types.is_datetime64_any_dtype(shown[column]):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d")
    lines = ["|" + "|".join(map(str, shown.columns)) + "|", "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["|" + "|".join("" if pd.isna(v) else str(v).replace("|", "\\|") for v in row) + "|"
              for row in shown.itertuples(index=False)]
    return MetadataValue.md("\n".join(lines))


def preview(frame: pd.DataFrame, rows: int = 5) -> MetadataValue:
    """First and last rows of a table."""
    if len(frame) <= 2 * rows:
        return table_md(frame)
    return table_md(pd.concat([frame.head(rows), frame.tail(rows)]))


def schema(frame: pd.DataFrame) -> MetadataValue:
    """The frame's columns and dtypes as Dagster's table schema."""
    return MetadataValue.table_schema(
        TableSchema(columns=[TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()])
    )


def image(png: bytes, alt: str) -> MetadataValue:
    """A PNG embedded in Markdown metadata (Dagster has no image type)."""
    return MetadataValue.md(markdown_image(png, alt))


def date_range(frame: pd.DataFrame, column: str = "date") -> str:
    """'first .. last' of the frame's date column, as a label."""
    return f"{frame[column].min():%Y-%m-%d} .. {frame[column].max():%Y-%m-%d}"
