"""What a search returns per file: the hit and the evidence of what matched (shared by indexer.search.searcher and
audiosearch.indexer.search.fusion)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """What matched: the three signals of one file, and its words that the query's words matched."""

    audio: float
    text: float
    lexical: float
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: str
    score: float
    start: float
    end: float
    duration: float
    evidence: Evidence | None = None  # what matched (queries with text)
    relevance: float = 0.0  # the score on one scale for every mode (FusionParams.relevance)
    # (start, end, audio score) over the whole file, at most MAX_HIT_WINDOWS spans (fusion.window_spans)
    windows: tuple[tuple[float, float, float], ...] = ()
