-- wrk script: POST a small chat completion. The key or gateway token comes from the
-- environment (BENCH_AUTH), so the same script drives the direct and the gateway runs.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
-- BENCH_STREAM=1 asks for a streamed answer (SSE, relayed or translated event by event).
local stream = os.getenv("BENCH_STREAM") == "1" and ',"stream":true' or ""
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "mock-gpt") .. '","messages":[{"role":"user","content":"hello"}]' .. stream .. '}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_AUTH") or "ok-bench-1")

-- Count non-2xx answers so a run full of errors cannot pass for a fast one.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("bench: requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
