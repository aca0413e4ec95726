"""Hybrid search: the audio index, the text vectors of the library's words and BM25 over them, fused.

Per query q and file f three signals (all exact for the files returned):
  audio(q, f)    cosine of the query and the file's best window (the audio index);
  text(q, f)     cosine of the query and the text-tower vector of the file's words (0 for a file without words);
  lexical(q, f)  BM25 of the query's words over the file's words relative to a perfect match, in [0, 1]
                 (audiosearch.indexer.words.store; 0 without words).
Fusion (FusionParams; the weights are calibrated by scripts/eval_hybrid.py on data never reported on):
  evidence(q, f) = alpha * (text - tau) / (1 - tau) + beta * lexical
  hybrid(q, f)   = audio + max(0, evidence)      audio(q, f) = audio      text(q, f) = evidence
A file whose words say nothing (ids, hashes, "track01": indexer.words.extract drops them) has no evidence, so a
library named by ids ranks exactly as audio-only search does; words must be closer to the query than `tau`
before they add anything, so unrelated names do not lift a file over a better-sounding one. Every score
rises with better text evidence: a file never drops for matching the query's words better.

Candidates: the best C files by audio, by text vector and by BM25; the missing signals of each candidate are
computed exactly. C grows until the page's last score is above what any unseen file could reach (the C-th
audio score plus the largest evidence the C-th text and lexical scores allow), so the page is exact (up to
MAX_CANDIDATES per list, which bounds a request's work). Above, not equal: files that tie (copies of one
sound, files with the same words) are ordered by id, and a tie across the cut could hide a file with a lower
id, so a page would repeat a file of the next page and skip another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from audiosearch.indexer.search.results import Evidence, Hit
from audiosearch.indexer.words.extract import text_words

if TYPE_CHECKING:
    from audiosearch.indexer.search.audio import AudioIndex
    from audiosearch.indexer.store import Filters


MODES = ("hybrid", "audio", "text")
NEEDS = {"audio": ("audio",), "text": ("text", "lexical"), "hybrid": ("audio", "text", "lexical")}
MIN_CANDIDATES = 32
# Candidate lists stop growing here (per list and query): a query whose page is not yet provably exact by then
# (only a loose bound, e.g. a word in a large share of the files) is answered from that many candidates, so no
# request's work grows with the library.
MAX_CANDIDATES = 8192
# FAISS's scores and the ones recomputed here from the stored vectors differ in the last bits (3e-8 seen): a page
# is final only when its last score is clearly above the bound, or a tie could hide behind that difference.
SCORE_EPS = 1e-6
AUDIO_BLOCK = 16_384  # windows rescored per step (64 MB of 1024-d vectors)
# Per-window scores returned with a hit: a file with more windows has adjacent ones merged into this many spans
# (each its windows' best score), so a 24-hour file costs the response no more than a 10-second one.
MAX_HIT_WINDOWS = 100


@dataclass(frozen=True)
class FusionParams:
    alpha: float = 0.8  # weight of the text-vector cosine above tau
    beta: float = 0.1  # weight of relative BM25
    tau: float = 0.35  # cosine below which a file's words are not evidence
    # "close match" thresholds on each mode's score; hybrid scores are in audio units and share its threshold
    min_score: dict[str, float] = field(default_factory=lambda: {"hybrid": 0.511, "audio": 0.511, "text": 0.111})
    # how far above (below) a mode's threshold a score must be for relevance 0.73 (0.27): see `relevance`
    spread: dict[str, float] = field(default_factory=lambda: {"hybrid": 0.05, "audio": 0.05, "text": 0.05})

    def relevance(self, mode: str, score: float) -> float:
        """One figure per hit, in [0, 1], with the same meaning in every mode: the mode's score mapped through a
        fixed logistic anchored at that mode's calibrated close-match threshold (`min_score`, fitted by
        scripts/eval_hybrid.py), 1 / (1 + exp(-(score - threshold) / spread)). So 0.5 is the threshold in any mode
        (below it the page says "no close match"), 0.73 one spread above, 0.95 three spreads above. It is
        monotone in the score (a response's relevances are ordered like its scores) and independent of the other
        hits and of a request's own min_score. Not a fitted probability: the spreads are set, not calibrated, to
        a twentieth of a cosine. Queries by audio example use mode audio's (text-query) calibration."""
        z = (score - self.min_score[mode]) / self.spread[mode]
        return round(float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))), 4)

    def evidence(self, text: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        return self.alpha * (text - self.tau) / (1.0 - self.tau) + self.beta * lexical

    def score(self, mode: str, audio: np.ndarray, text: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        if mode == "audio":
            return audio
        ev = self.evidence(text, lexical)
        return ev if mode == "text" else audio + np.maximum(ev, 0.0)


FUSION = FusionParams()


def query_terms(query: str) -> list[str]:
    """The words of a query, by the same rules as a file's (so 'the sound of a dog' looks for 'dog')."""
    return list(text_words([query]))


@dataclass(frozen=True)
class Ranking:
    top: float | None  # the best score of the whole ranking (None: no file)
    hits: list[Hit]  # one page of it


@dataclass
class _Signals:
    """Per-candidate signals of one query, filled in as candidates arrive."""

    audio: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # id -> (score, start, end)
    text: dict[int, float] = field(default_factory=dict)
    lexical: dict[int, tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    rows: dict[int, tuple[str, float]] = field(default_factory=dict)  # id -> (path, duration), filters passed
    no_words: set[int] = field(default_factory=set)  # looked up: no text vector
    no_match: set[int] = field(default_factory=set)  # looked up: no lexical match


class HybridRanker:
    """Ranks one snapshot's files by mode, from its AudioIndex and the words of its files (when it has them)."""

    def __init__(
        self,
        audio: AudioIndex,
        params: FusionParams = FUSION,
        use_words: bool = True,
        word_search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        """use_words=False (a query by audio example, no text): audio ranking, hits without evidence.
        `word_search`: the words' vector search instead of the reader's (a sharded index), same contract as
        WordsReader.vector_search."""
        self.audio, self.reader, self.params = audio, audio.reader, params
        words = self.reader.words if use_words else None
        # A library named by ids only has a words store with no file in it: its words can lift nothing, so it is
        # ranked as audio alone (the same pages, without the candidate lists the words would need).
        self.words = words if words is not None and words.index.ntotal > 0 else None
        self.use_words = use_words
        self.word_search = word_search

    def rank(
        self, queries: np.ndarray, texts: list[str], want: int, filters: Filters, mode: str, page_from: int = 0
    ) -> list[Ranking]:
        """For each query its best score and its files ranked page_from..want (the page), best first."""
        words = self.words
        n_pool = self.reader.n_files if mode != "text" else (int(words.index.ntotal) if words else 0)
        if want <= 0:  # the filters leave no file
            return [Ranking(None, []) for _ in queries]
        # Audio alone needs one spare candidate only (to see that no tie crosses the page's end); the words' lists
        # need more: a file they lift may be far down the audio list.
        audio_only = mode == "audio" or (mode == "hybrid" and words is None)
        c = want + 1 if audio_only else max(want + 1, MIN_CANDIDATES)
        out: list[Ranking | None] = [None] * len(queries)
        todo = list(range(len(queries)))
        while todo:
            audio = self.audio.grouped(queries[todo], c, filters) if mode != "text" else [[] for _ in todo]
            tv_scores, tv_ids = self._text_candidates(queries[todo], c, mode)
            still = []
            for row, q in enumerate(todo):
                ranked, exact = self._rank_one(queries[q], texts[q], audio[row], tv_scores[row], tv_ids[row], c, want,
                                               filters, mode, page_from)  # fmt: skip
                if exact or c >= n_pool or c >= max(MAX_CANDIDATES, want):
                    out[q] = ranked
                else:
                    still.append(q)
            todo, c = still, min(c * 4, max(MAX_CANDIDATES, want + 1))
        return [r or Ranking(None, []) for r in out]

    def signals(self, q: np.ndarray, text: str, file_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact (audio, text, lexical) signals of one (shaped) query for the given files, as arrays in their
        order: what the ranking fuses, for evaluation and calibration over whole libraries."""
        from audiosearch.indexer.store import Filters

        sig = _Signals()
        sig.rows.update(self.reader.files(file_ids, Filters()))
        self._fill(q, query_terms(text), file_ids, sig, ("audio", "text", "lexical"))
        return self._arrays(file_ids, sig)

    def _text_candidates(self, queries: np.ndarray, c: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
        words = self.words
        if words is None or mode == "audio":
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return (self.word_search or words.vector_search)(queries, c)

    def _rank_one(
        self,
        q: np.ndarray,
        text: str,
        audio_hits: list[Hit],
        tv_scores: np.ndarray,
        tv_ids: np.ndarray,
        c: int,
        want: int,
        filters: Filters,
        mode: str,
        page_from: int,
    ) -> tuple[Ranking, bool]:
        words = self.words
        terms = query_terms(text) if words is not None else []
        sig = _Signals()
        for h in audio_hits:
            sig.rows[h.file_id] = (h.path, h.duration)
        if words is None or mode == "audio":  # every score from the one search: they compare exactly
            sig.audio.update((h.file_id, (h.score, h.start, h.end)) for h in audio_hits)
        # Otherwise files outside the audio list get recomputed scores, so all are recomputed from the stored
        # vectors (the search's differ in the last bits): copies of one sound tie exactly, a file's score does
        # not depend on which list found it, and a CPU and a GPU backend rank alike. Text cosines likewise.
        text_ids = tv_ids[tv_ids >= 0].tolist()
        lexical = words.bm25.rank(terms, limit=c) if words is not None and mode != "audio" else {}
        sig.lexical.update(lexical)
        ids = list(dict.fromkeys([*(h.file_id for h in audio_hits), *text_ids, *sig.lexical]))
        sig.rows.update(self.reader.files([i for i in ids if i not in sig.rows], filters))
        ids = [i for i in ids if i in sig.rows]
        self._fill(q, terms, ids, sig, NEEDS[mode])
        if mode == "text":
            ids = [i for i in ids if i in sig.text]  # text-only search ranks the files that have words
        scores = self.params.score(mode, *self._arrays(ids, sig))
        top = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))[:want]
        ranked = [(ids[j], float(scores[j])) for j in top]
        self._fill(q, terms, [i for i, _ in ranked[page_from:]], sig, ("audio", "text", "lexical"))  # the page's
        # What a file outside every candidate list could still score: the ranking is exact once its last
        # score reaches that (or no candidate list was cut short).
        a_c = audio_hits[-1].score if len(audio_hits) >= c else -np.inf
        t_c = float(tv_scores[-1]) if len(tv_scores) >= c else -np.inf
        l_c = min(v[0] for v in lexical.values()) if len(lexical) >= c else 0.0
        ev = float(self.params.evidence(np.float64(t_c), np.float64(l_c)))
        bound = {"audio": a_c, "text": ev, "hybrid": a_c + max(ev, 0.0)}[mode]
        exact = not np.isfinite(bound) or (len(ranked) >= want and ranked[-1][1] > bound + SCORE_EPS)
        spans = self.window_spans(q, [fid for fid, _ in ranked[page_from:]], sig.audio)
        page = [
            self._hit(fid, score, sig, self.use_words, mode, spans.get(fid, ())) for fid, score in ranked[page_from:]
        ]
        return Ranking(ranked[0][1] if ranked else None, page), exact

    @staticmethod
    def _arrays(ids: list[int], sig: _Signals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        audio = np.array([sig.audio[i][0] if i in sig.audio else -np.inf for i in ids])
        text = np.array([sig.text.get(i, 0.0) for i in ids])
        lexical = np.array([sig.lexical.get(i, (0.0, ()))[0] for i in ids])
        return audio, text, lexical

    def _hit(self, fid: int, score: float, sig: _Signals, evidence: bool, mode: str, spans: tuple = ()) -> Hit:
        audio, start, end = sig.audio[fid]
        path, duration = sig.rows[fid]
        lex, matched = sig.lexical.get(fid, (0.0, ()))
        ev = Evidence(round(audio, 6), round(sig.text.get(fid, 0.0), 6), round(lex, 6), matched) if evidence else None
        return Hit(fid, path, score, start, end, duration, ev, self.params.relevance(mode, score), spans)

    def window_spans(
        self, q: np.ndarray, file_ids: list[int], matched: dict[int, tuple[float, float, float]] | None = None
    ) -> dict[int, tuple[tuple[float, float, float], ...]]:
        """Each file's audio score over its whole length: (start, end, score) per window from the stored vectors,
        adjacent windows merged (best score of each group) down to MAX_HIT_WINDOWS spans. `matched` (file id ->
        the hit's audio score, start, end): that window scores the hit's own audio score (a backend's score may
        differ from the recomputed one in the last bits), so the best span's score is the hit's audio evidence."""
        out = {}
        for fid, (wins, scores) in self._window_scores(q, file_ids).items():
            if matched and fid in matched:
                audio, start, end = matched[fid]
                scores = scores.astype(np.float64)
                scores[[j for j, (_, s, e) in enumerate(wins) if (s, e) == (start, end)]] = audio
            if len(wins) <= MAX_HIT_WINDOWS:  # one window a span: no groups to form (most files)
                out[fid] = tuple((w[1], w[2], round(v, 6)) for w, v in zip(wins, scores.tolist(), strict=True))
                continue
            groups = np.array_split(np.arange(len(wins)), MAX_HIT_WINDOWS)
            out[fid] = tuple(
                (wins[g[0]][1], max(wins[j][2] for j in g), round(float(scores[g].max()), 6)) for g in groups
            )
        return out

    def _fill(self, q: np.ndarray, terms: list[str], ids: list[int], sig: _Signals, needs: tuple[str, ...]) -> None:
        """Compute the signals in `needs` that the candidate lists did not give (no words: text and lexical 0)."""
        words = self.words
        if "audio" in needs:
            sig.audio.update(self._audio(q, [i for i in ids if i not in sig.audio]))
        if words is None:
            return
        if "text" in needs:
            todo = [i for i in ids if i not in sig.text and i not in sig.no_words]
            vecs = words.vectors(todo)
            sig.text.update({i: float(v @ q[: len(v)]) for i, v in vecs.items()})
            sig.no_words.update(i for i in todo if i not in vecs)
        if "lexical" in needs:
            todo = [i for i in ids if i not in sig.lexical and i not in sig.no_match]
            found = words.bm25.rank(terms, file_ids=todo)
            sig.lexical.update(found)
            sig.no_match.update(i for i in todo if i not in found)

    def _audio(self, q: np.ndarray, file_ids: list[int]) -> dict[int, tuple[float, float, float]]:
        """Best-window audio score (and the window) of each file, from its stored vectors."""
        out = {}
        for fid, (wins, scores) in self._window_scores(q, file_ids).items():
            j = int(np.argmax(scores))
            out[fid] = (float(scores[j]), wins[j][1], wins[j][2])
        return out

    def _window_scores(
        self, q: np.ndarray, file_ids: list[int]
    ) -> dict[int, tuple[list[tuple[int, float, float]], np.ndarray]]:
        """file id -> (its windows, their audio scores) from the stored vectors. einsum sums each row alike
        wherever it sits (BLAS's matrix-vector product need not): equal vectors, equal scores."""
        out = {}
        windows = self.reader.file_windows(file_ids)
        rows = np.array([w for wins in windows.values() for w, _, _ in wins], np.int64)
        scores = np.empty(len(rows), np.float32)
        for i in range(0, len(rows), AUDIO_BLOCK):  # in blocks: a long candidate list never copies every window
            # the index's own vectors, or the full ones mapped beside a compressed index (SnapshotReader.vectors_of)
            scores[i : i + AUDIO_BLOCK] = np.einsum("ij,j->i", self.reader.vectors_of(rows[i : i + AUDIO_BLOCK]), q)
        at = 0
        for fid, wins in windows.items():
            out[fid] = (wins, scores[at : at + len(wins)])
            at += len(wins)
        return out
