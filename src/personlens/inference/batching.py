"""Files in, batches out: the one loop that decodes crops for every batched command.

Results come back in input order; a file that cannot be read (missing, empty, not an image,
truncated, over the pixel limit) becomes a ``PredictionError`` in its place, and the files
around it are still processed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..data.images import ImageLoadError, load_image


@dataclass(frozen=True)
class PredictionError:
    image: str
    error: str


def decoded_batches(paths: Iterable[str | Path], batch_size: int,
                    load: Callable = load_image) -> Iterator[list[tuple[str, object]] | PredictionError]:
    """Lists of up to ``batch_size`` ``(source, load(path))``, with a ``PredictionError`` in
    place of each unreadable file (the batch before it is yielded first, so order holds)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    pending: list[tuple[str, object]] = []
    for path in paths:
        try:
            pending.append((str(path), load(path)))
        except ImageLoadError as e:
            if pending:
                yield pending
                pending = []
            yield PredictionError(str(path), e.reason)
            continue
        if len(pending) >= batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def batched_over_paths(paths: Iterable[str | Path], batch_size: int, run,
                       load: Callable = load_image) -> Iterator:
    """``run(sources, loaded) -> results`` per batch; results (and errors) in input order."""
    for item in decoded_batches(paths, batch_size, load):
        if isinstance(item, PredictionError):
            yield item
        else:
            yield from run([s for s, _ in item], [x for _, x in item])
