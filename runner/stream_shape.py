"""What happens to the Arrow stream between a source and a destination, in this order:

0. ``--yield-limit`` (:func:`limit_pages`): the source's stream ends after that many pages of
   ``--page-size`` rows; the pipeline applies it before the incremental cursor sees a row, so
   the cursor only advances over rows that are loaded;
1. ``--mask``: masked columns replaced (named as the source names them, or as
   ``--schema-naming`` names them);
2. ``--schema-naming``: columns renamed for the destination;
3. ``--schema-contract``: new or changed columns kept, refused, or left out, against the
   destination table as it is.

All of it runs batch by batch as the destination consumes them, so memory stays bounded and
a refused run (bad mask column, frozen contract) fails before the destination writes anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa

from kingest.runner.interfaces import LoadOptions, SourceStream
from kingest.runner.masking import Mask, Masker
from kingest.runner.naming import destination_names, normalize
from kingest.runner.schema_contract import ContractFilter

DEFAULT_PAGE_SIZE = 25_000
"""ingestr's ``--page-size`` default (its Go release; the Python one had 50,000)."""


def _masks_by_source_name(
    masks: tuple[Mask, ...], schema: pa.Schema, options: LoadOptions
) -> list[Mask]:
    """Masks may name a column as the source has it or as the destination will: both work."""
    renamed = {normalize(name, options.schema_naming): name for name in schema.names}
    resolved = []
    for mask in masks:
        if mask.column not in schema.names and mask.column in renamed:
            mask = Mask(renamed[mask.column], mask.algorithm, mask.param)
        resolved.append(mask)
    return resolved


def _pages(
    batches: Iterator[pa.RecordBatch], page_rows: int, pages: int
) -> Iterator[pa.RecordBatch]:
    """At most ``pages * page_rows`` rows: ingestr's ``--yield-limit`` pages of ``--page-size``."""
    remaining = pages * page_rows
    for batch in batches:
        if remaining <= 0:
            return
        if batch.num_rows > remaining:
            batch = batch.slice(0, remaining)
        remaining -= batch.num_rows
        yield batch


def shape(stream: SourceStream, options: LoadOptions, existing: Mapping[str, str] | None) -> None:
    """Replace ``stream.reader`` by the shaped stream; ``existing`` is the destination table's
    columns (dlt types) or None when the table does not exist (or is refreshed)."""
    source = stream.reader
    schema = source.schema
    masker = None
    if options.masks:
        masker = Masker(_masks_by_source_name(options.masks, schema, options), schema)
        schema = masker.schema
    names = destination_names(schema.names, options.schema_naming)
    renamed = names != schema.names
    if renamed:
        schema = pa.schema([f.with_name(n) for f, n in zip(schema, names, strict=True)])
    contract = ContractFilter(options.schema_contract, schema, existing)
    if not (masker or renamed or contract.active):
        return

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in source:
            if masker is not None:
                batch = masker.apply(batch)
            if renamed:
                batch = batch.rename_columns(names)
            yield contract.apply(batch)

    stream.reader = pa.RecordBatchReader.from_batches(contract.schema, batches())


def limit_pages(stream: SourceStream, options: LoadOptions) -> None:
    """End ``stream.reader`` after ``--yield-limit`` pages, as ingestr limits the source's own
    pages: before the cursor and the shaping above see any row."""
    if not options.yield_limit:
        return
    source = stream.reader
    page_rows = options.page_size or DEFAULT_PAGE_SIZE
    limited = _pages(source, page_rows, options.yield_limit)
    stream.reader = pa.RecordBatchReader.from_batches(source.schema, limited)
