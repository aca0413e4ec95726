-- wrk script for bench/query.py: every request a distinct text query (no cache hits) of the form of the Python
-- side's queries(): 2-5 words drawn from the same list and a six-digit number from this run's block of 100,000
-- (WRK_BLOCK), so the service and the naive loop encode token sequences of the same lengths; prints one
-- machine-readable line at the end.
local words = {"dog", "bark", "rain", "thunder", "glass", "engine", "bird", "door", "crowd", "water", "wind",
               "footsteps", "bell", "siren", "car", "music"}
local n = 0  -- per wrk thread: bench/query.py runs one (-t1), so every query of a run is distinct (< 100,000 a run)
local base = 100000 * tonumber(os.getenv("WRK_BLOCK") or "3") + tonumber(os.getenv("WRK_START") or "0")
math.randomseed(tonumber(os.getenv("WRK_SEED") or "1") + tonumber(tostring({}):sub(8), 16))

request = function()
  local q = {}
  for _ = 1, math.random(2, 5) do q[#q + 1] = words[math.random(#words)] end
  local path = "/search?k=10&q=" .. table.concat(q, "+") .. "+" .. (base + n)
  n = n + 1
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d p50_ms=%.3f p99_ms=%.3f seconds=%.3f\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
