-- wrk script for bench/query.py: every request a distinct text query (no cache hits), words drawn at random from
-- the same list as the Python driver plus a running number; prints one machine-readable line at the end.
local words = {"dog", "bark", "rain", "thunder", "glass", "engine", "bird", "door", "crowd", "water", "wind",
               "footsteps", "bell", "siren", "car", "music"}
local n = 0
math.randomseed(tonumber(os.getenv("WRK_SEED") or "1") + tonumber(tostring({}):sub(8), 16))

request = function()
  n = n + 1
  local q = {}
  for _ = 1, math.random(2, 5) do q[#q + 1] = words[math.random(#words)] end
  return wrk.format("GET", "/search?k=10&q=" .. table.concat(q, "+") .. "+" .. n .. "r" .. math.random(1e6))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d p50_ms=%.3f p99_ms=%.3f seconds=%.3f\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
