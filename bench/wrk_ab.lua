-- wrk script for bench/ab.py: POST a chat completion; with BENCH_UNIQUE=1 every request carries a
-- prompt of its own (a 0% cache hit rate), otherwise the same one (100% once the first is stored).
-- BENCH_PROTOCOL says how the same request is written: chat (default), messages (Anthropic),
-- responses (OpenAI Responses) or completions (legacy). Prints one JSON summary line, like the
-- yardstick's wrk_chat.lua.

local model = os.getenv("BENCH_MODEL") or "mock-gpt-4o-mini"
local unique = os.getenv("BENCH_UNIQUE") == "1"
local stream = os.getenv("BENCH_STREAM") == "1"
local nonce = os.getenv("BENCH_NONCE") or "0"
local protocol = os.getenv("BENCH_PROTOCOL") or "chat"
local api_key = os.getenv("BENCH_API_KEY") or ""
local counter = 0
-- A global, not a local: setup() below sets it in each thread's own state (thread:set), so the two
-- threads' prompts differ (a local here would shadow it, and both threads would send the same ones).
thread_id = 0

local function body(n)
  local prompt = "You are benchmarking an LLM gateway. Please explain in two sentences what an " ..
    "OpenAI-compatible proxy does, why it adds latency, and how that latency is measured."
  if unique then  -- words of its own: no exact match, and no near one for the semantic cache either
    local words = {}
    for i = 1, 24 do words[i] = "w" .. math.random(1, 1000000000) end
    prompt = table.concat(words, " ") .. " " .. nonce .. "-" .. thread_id .. "-" .. n
  end
  local system = "You are a helpful assistant."
  local text
  if protocol == "messages" then
    text = '{"model":"' .. model .. '","system":"' .. system .. '","messages":[{"role":"user","content":"' ..
      prompt .. '"}],"max_tokens":64,"temperature":0'
    if stream then text = text .. ',"stream":true' end
  elseif protocol == "responses" then
    text = '{"model":"' .. model .. '","instructions":"' .. system .. '","input":"' .. prompt ..
      '","max_output_tokens":64,"temperature":0'
    if stream then text = text .. ',"stream":true' end
  elseif protocol == "completions" then
    text = '{"model":"' .. model .. '","prompt":"' .. prompt .. '","max_tokens":64,"temperature":0'
    if stream then text = text .. ',"stream":true,"stream_options":{"include_usage":true}' end
  else
    text = '{"model":"' .. model .. '","messages":[{"role":"system","content":"' .. system .. '"},' ..
      '{"role":"user","content":"' .. prompt .. '"}],"max_tokens":64,"temperature":0'
    if stream then text = text .. ',"stream":true,"stream_options":{"include_usage":true}' end
  end
  return text .. '}'
end

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

function init(args)
  math.randomseed(tonumber(string.sub(nonce, -9)) + thread_id)
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if api_key ~= "" then headers["Authorization"] = "Bearer " .. api_key end
  return wrk.format("POST", nil, headers, body(counter))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"err_status":%d,"err_other":%d,"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
