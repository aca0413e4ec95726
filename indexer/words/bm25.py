"""Lexical ranking of the library's words: BM25 through SQLite FTS5 (the words_fts table of indexer.words.store),
as a score relative to a perfect match, with the words each file matched."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from audiosearch.indexer.sqlite import select_in

MAX_TERMS = 32  # of one query: longer queries keep their first 32 distinct words
DF_CACHE = 8192  # query terms whose document frequency is remembered
MARK = ("\x02", "\x03")  # around matched words in FTS5's highlight(); never part of a word
HIGHLIGHT = re.compile(f"{MARK[0]}([^{MARK[1]}]*){MARK[1]}")


class Bm25:
    """BM25 over one snapshot's words_fts; `query` runs SQL under the snapshot reader's connection lock."""

    def __init__(self, query: Callable[[str, list[Any]], list[Any]], n_docs: int) -> None:
        self._query, self.n_docs = query, n_docs
        self._lock = threading.Lock()  # document frequencies of recent query terms (an LRU: memory stays bounded)
        self._df: OrderedDict[str, int] = OrderedDict()

    def rank(
        self, terms: list[str], limit: int | None = None, file_ids: list[int] | None = None
    ) -> dict[int, tuple[float, tuple[str, ...]]]:
        """file id -> (score, matched words) for the files whose words hold any of `terms`, best first; `limit`
        files at most, or only those of `file_ids`. The score is BM25 relative to a perfect match, in [0, 1]:
        FTS5's bm25() over the sum of the terms' idf (what a file holding each term once, at average length,
        scores), capped at 1. Matched words are the file's words that FTS5's stemmer matched ('barking' for
        'bark')."""
        terms = list(dict.fromkeys(terms))[:MAX_TERMS]
        if not terms or self.n_docs == 0 or (file_ids is not None and not file_ids):
            return {}
        total_idf = sum(self._idf(t) for t in terms)
        sql = "SELECT rowid, -bm25(words_fts), highlight(words_fts, 0, ?, ?) FROM words_fts WHERE words_fts MATCH ?"
        args: list[Any] = [*MARK, " OR ".join(_quoted(t) for t in terms)]
        order = " ORDER BY bm25(words_fts), rowid"  # a list cut inside a tie keeps the lowest ids, as pages order ties
        cut = (" LIMIT ?", [limit]) if limit is not None else ("", [])
        if file_ids is None:
            rows = self._query(sql + order + cut[0], args + cut[1])
        else:  # chunks of the ids, each cut alone, then merged in the same order and cut again
            rows = select_in(self._query, sql + " AND rowid IN ({marks})" + order + cut[0], file_ids, args, cut[1])
            rows = sorted(rows, key=lambda r: (-r[1], r[0]))[:limit]
        return {
            fid: (min(1.0, score / total_idf), tuple(dict.fromkeys(HIGHLIGHT.findall(marked))))
            for fid, score, marked in rows
        }

    def _idf(self, term: str) -> float:
        """FTS5's idf: log((N - n + 0.5) / (n + 0.5)), at least 1e-6; n = files holding the (stemmed) term."""
        with self._lock:
            n = self._df.get(term)
            if n is not None:
                self._df.move_to_end(term)
        if n is None:
            n = self._query("SELECT COUNT(*) FROM words_fts WHERE words_fts MATCH ?", [_quoted(term)])[0][0]
            with self._lock:
                self._df[term] = n
                while len(self._df) > DF_CACHE:
                    self._df.popitem(last=False)
        return max(1e-6, math.log((self.n_docs - n + 0.5) / (n + 0.5)))


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'
