"""Request and response models of the HTTP API (they make the OpenAPI document at /docs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audiosearch.core.errors import InvalidInputError
from audiosearch.indexer.search.searcher import Filters, Hit, Page, QuerySpec

MAX_QUERY_CHARS = 1000
MAX_K = 100  # results per page, for HTTP and the CLI alike
CLIPS_PREFIX = "/clips"  # app.api.routes.clips
SearchMode = Literal["hybrid", "audio", "text"]  # audiosearch.indexer.search.fusion.MODES
MODE_HELP = (
    "hybrid (default): the audio and the library's words (file names, folders, tags) fused; audio: the audio "
    "alone; text: the words alone (files without words are not ranked)"
)
MIN_SCORE_HELP = "flag `no_close_match` when the best result scores below this (default: the mode's calibrated value)"


def clean_query(v: str) -> str:
    """Strip, refuse empty text and control characters other than whitespace."""
    text = v.strip()
    if not text:
        raise ValueError("query must not be empty")
    if any(ord(c) < 32 and c not in "\t\n\r" or c == "\x7f" for c in text):
        raise ValueError("query must not contain control characters")
    return text


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path_prefix: str | None = Field(None, max_length=1024, description="only files under this library path")
    min_duration: float | None = Field(None, ge=0, description="seconds")
    max_duration: float | None = Field(None, ge=0, description="seconds")

    @staticmethod
    def of(f: SearchFilters | None) -> Filters:
        """The searcher's Filters of a request's (none: every file)."""
        if f is None:
            return Filters()
        if f.min_duration is not None and f.max_duration is not None and f.min_duration > f.max_duration:
            raise InvalidInputError("filters.min_duration must not exceed filters.max_duration")
        return Filters(f.path_prefix, f.min_duration, f.max_duration)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, examples=["a dog barking"])
    k: int = Field(10, ge=1, le=MAX_K, description="results per page")
    offset: int = Field(0, ge=0, le=10_000)
    filters: SearchFilters | None = None
    mode: SearchMode = Field("hybrid", description=MODE_HELP)
    min_score: float | None = Field(None, ge=-10, le=10, description=MIN_SCORE_HELP)

    @field_validator("query")
    @classmethod
    def _clean(cls, v: str) -> str:
        return clean_query(v)

    def spec(self) -> QuerySpec:
        """The query as the searcher takes it: HTTP's form and the searcher's differ only here."""
        return QuerySpec(self.k, self.offset, SearchFilters.of(self.filters), self.query, self.mode, self.min_score)


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(..., min_length=1, max_length=64)
    k: int = Field(10, ge=1, le=MAX_K)
    filters: SearchFilters | None = None
    mode: SearchMode = Field("hybrid", description=MODE_HELP)
    min_score: float | None = Field(None, ge=-10, le=10, description=MIN_SCORE_HELP)

    def specs(self) -> list[QuerySpec]:
        filters = SearchFilters.of(self.filters)
        return [QuerySpec(self.k, 0, filters, q, self.mode, self.min_score) for q in self.queries]

    @field_validator("queries")
    @classmethod
    def _clean_all(cls, v: list[str]) -> list[str]:
        for q in v:
            if len(q) > MAX_QUERY_CHARS:
                raise ValueError(f"each query must be at most {MAX_QUERY_CHARS} characters")
        return [clean_query(q) for q in v]


class Evidence(BaseModel):
    audio: float = Field(..., description="cosine of the query and the best window")
    text: float = Field(..., description="cosine of the query and the file's words (0: no words)")
    lexical: float = Field(..., description="BM25 of the query's words over the file's words, 1 = all found")
    words: list[str] = Field(..., description="the file's words that the query's words matched")


class WindowScore(BaseModel):
    start: float = Field(..., description="seconds")
    end: float
    score: float = Field(..., description="audio cosine of the query and this part of the file")


RELEVANCE_HELP = (
    "the score on one scale for every mode, in [0, 1]: a fixed logistic of the mode's score anchored at its "
    "calibrated close-match threshold (0.5 = at the threshold, 0.73 one spread of 0.05 above, 0.95 three above); "
    "ordered like score within a response"
)


class SearchHit(BaseModel):
    id: int = Field(..., description="clip (file) id, for /clips/{id}")
    path: str = Field(..., description="path inside the library")
    score: float = Field(..., description="the mode's score: audio cosine, plus the words' evidence in hybrid")
    relevance: float = Field(..., ge=0, le=1, description=RELEVANCE_HELP)
    start: float = Field(..., description="start of the best-matching window, seconds")
    end: float
    duration: float = Field(..., description="length of the whole file, seconds")
    audio_url: str
    evidence: Evidence | None = Field(None, description="what matched (text queries)")
    windows: list[WindowScore] = Field(
        default_factory=list,
        description="the audio score along the whole file, in order: one entry per indexed window, adjacent "
        "windows merged (their best score) into at most 100; the best equals evidence.audio",
    )

    @staticmethod
    def fields(h: Hit, audio_url: str) -> dict[str, Any]:
        """A hit as this model's fields, validated by the response in one call: pydantic validates nested dicts
        in its core, where building a model per hit and per window (up to 100 a hit) took 1.5x the CPU."""
        ev = h.evidence
        evidence = None
        if ev is not None:
            evidence = {"audio": ev.audio, "text": ev.text, "lexical": ev.lexical, "words": ev.words}
        return {
            "id": h.file_id,
            "path": h.path,
            "score": round(h.score, 6),
            "relevance": h.relevance,
            "start": h.start,
            "end": h.end,
            "duration": h.duration,
            "audio_url": audio_url,
            "evidence": evidence,
            "windows": [{"start": a, "end": b, "score": v} for a, b, v in h.windows],
        }


class SearchResponse(BaseModel):
    query: str = Field(..., description="the query; `<like:PATH>` for similar files, `<audio:NAME>` for an upload")
    results: list[SearchHit]
    total: int = Field(..., description="files matching the filters (text mode: those with words)")
    took_ms: float
    mode: str = Field("audio", description="the ranking used (hybrid on an index without words is audio)")
    min_score: float | None = Field(None, description="the close-match threshold applied")
    no_close_match: bool = Field(False, description="true when even the best result scores below min_score")

    @classmethod
    def of(cls, query: str, page: Page, took_ms: float, audio_url: Callable[[int], str]) -> SearchResponse:
        """The response to one page of results (HTTP and the CLI print the same); audio_url(id) is a hit's."""
        return cls.model_validate(
            {
                "query": query,
                "results": [SearchHit.fields(h, audio_url(h.file_id)) for h in page.hits],
                "total": page.total,
                "took_ms": took_ms,
                "mode": page.mode,
                "min_score": page.min_score,
                "no_close_match": not page.close_match,
            }
        )


def audio_path(clip_id: int) -> str:
    """The path of a clip's audio route (app.api.routes.clips.clip_audio): a hit's audio_url, on HTTP and the CLI."""
    return f"{CLIPS_PREFIX}/{clip_id}/audio"


def like_query(path: str) -> str:
    """What a similar-files response says was searched: the clip's library path (as `<audio:NAME>` says an upload)."""
    return f"<like:{path}>"


class AudioQuery(BaseModel):
    seconds: float = Field(..., description="seconds of the upload the query used, from its start")
    truncated: bool = Field(..., description="the upload is longer: only its first `seconds` were used")
    max_seconds: float = Field(..., description="the service's limit (AUDIOSEARCH_MAX_QUERY_SECONDS)")


class AudioSearchResponse(SearchResponse):
    audio: AudioQuery = Field(..., description="what part of the upload the query used")


class BatchSearchResponse(BaseModel):
    responses: list[SearchResponse]
    took_ms: float


class ClipWords(BaseModel):
    path: list[str] = Field(..., description="words of the folders and file name")
    tags: list[str] = Field(..., description="words of the embedded tags")
    fields: dict[str, str] = Field(..., description="the tags as written: title, description, keywords, ...")


class ClipInfo(BaseModel):
    id: int
    path: str
    size: int
    duration: float
    sample_rate: int
    channels: int
    sha1: str
    windows: int
    audio_url: str
    words: ClipWords | None = Field(None, description="what hybrid search knows of the file (null: index too old)")


class ClipPeaks(BaseModel):
    id: int
    duration: float = Field(..., description="seconds; peak i covers [i, i+1) * duration / len(peaks)")
    peaks: list[float] | None = Field(
        ...,
        description="largest absolute sample (mono mix, full scale = 1) in each of up to 400 equal parts of the "
        "file; null when unknown (a file indexed before peaks existed that is too long or unreadable now)",
    )
    source: Literal["index", "file", "none"] = Field(
        ..., description="index: stored at index time; file: computed from the file on request (then kept)"
    )


class IndexMemory(BaseModel):
    ram_bytes: int = Field(..., description="bytes of the audio index's vectors, codes and graph read into RAM")
    mapped_bytes: int = Field(
        ...,
        description="bytes left on disk and read on demand (memory-mapped codes with AUDIOSEARCH_MMAP; the full "
        "vectors beside a compressed index): in the page cache as they are read, not the service's own memory",
    )


class IndexInfo(BaseModel):
    index_dir: str
    snapshot: str
    files: int
    windows: int
    faiss: str = Field(..., description="the FAISS index (manifest.faiss); manifest.faiss_choice says why")
    memory: IndexMemory
    manifest: dict[str, Any]

    @classmethod
    def of(cls, index_dir: object, searcher: Any) -> IndexInfo:
        """What GET /index and POST /admin/reload report about a loaded snapshot (indexer.search.searcher.Searcher)."""
        s = searcher
        return cls(
            index_dir=str(index_dir),
            snapshot=s.snapshot.name,
            files=s.n_files,
            windows=int(s.index.ntotal),
            faiss=str(s.manifest.get("faiss", "")),
            memory=IndexMemory(**s.reader.memory()),
            manifest=s.manifest,
        )


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index_dir: str | None = Field(None, description="switch to another index directory; default: reload the same")


class ErrorResponse(BaseModel):
    detail: str
