-- loadtest/wrk/load.lua — the one wrk script every workload of loadtest/run uses.
--
-- It owns: building the request (optionally N pipelined copies), counting responses
-- that are not 200 or whose body has the wrong length (only with LOADTEST_CHECK=1),
-- and printing one machine-readable result line at the end.
--
-- Arguments (after `--` on the wrk command line):
--   1: request path, e.g. /GET/hello                (default /GET/hello)
--   2: pipeline depth: requests written per write   (default 1)
--   3: expected body length in bytes, -1 = no check (default -1)
--   4: method (default GET); with POST:
--   5: the body, sent as JSON with the Upstash SDK's headers (a Bearer token and
--      `Upstash-Encoding: base64`): the SDK-shaped cells
--
-- With LOADTEST_KEYS=N in the environment, the path is a format string (`%03d`)
-- filled with 0..N-1 in turn: request after request (and within a pipelined batch)
-- cycles through N keys, as the edge cache's `hot` cells do.
--
-- With depth > 1, init() builds `depth` copies with wrk.format and request()
-- returns them concatenated, as wrk's scripts/pipeline.lua does; wrk counts the
-- copies and expects that many responses per write.
--
-- Each wrk thread runs in its own Lua state, and done() runs in yet another one,
-- so the counters live in the thread states and done() collects them through the
-- thread objects remembered in setup().
--
-- Output: a line `JSON {...}` on stdout (all latencies in microseconds).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1] or "/GET/hello"
   local depth = tonumber(args[2] or "1")
   expect_len = tonumber(args[3] or "-1")
   local method = args[4] or "GET"
   local headers, body = nil, nil
   if method == "POST" then
      body = args[5] or "[]"
      headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer loadtest",
                 ["Upstash-Encoding"] = "base64"}
   end
   local keys = tonumber(os.getenv("LOADTEST_KEYS") or "0")
   batches = {}
   if keys > 0 then
      -- batch j holds keys j*depth .. j*depth+depth-1 (mod N): N batches cover them all
      for j = 0, keys - 1 do
         local r = {}
         for i = 1, depth do
            local p = string.format(path, (j * depth + i - 1) % keys)
            r[i] = wrk.format(method, p, headers, body)
         end
         batches[j + 1] = table.concat(r)
      end
   else
      local r = {}
      for i = 1, depth do
         r[i] = wrk.format(method, path, headers, body)
      end
      batches[1] = table.concat(r)
   end
   nbatch = #batches
   turn = 0
   responses = 0
   non200 = 0
   badbody = 0
end

function request()
   turn = turn % nbatch + 1
   return batches[turn]
end

-- The response() hook makes wrk hand every response to Lua, which costs wrk about
-- as much CPU as the request itself and caps the rate: it is defined only when the
-- harness asks for body checks (LOADTEST_CHECK=1, the warm-up runs). Without it,
-- wrk still counts non-2xx/3xx statuses (summary.errors.status) and socket errors.
if os.getenv("LOADTEST_CHECK") == "1" then
   function response(status, headers, body)
      responses = responses + 1
      if status ~= 200 then
         non200 = non200 + 1
      elseif expect_len >= 0 and #body ~= expect_len then
         badbody = badbody + 1
         if not badsample then
            badsample = #body .. " bytes: " .. string.sub(body, 1, 60)
         end
      end
   end
end

-- A Lua string as a JSON string literal (control and non-ASCII bytes as \u00XX).
local function json_string(s)
   return '"' .. string.gsub(s, '[%c"\\\128-\255]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

function done(summary, latency, requests)
   local n_resp, n_non200, n_bad, sample = 0, 0, 0, nil
   for _, t in ipairs(threads) do
      n_resp = n_resp + (t:get("responses") or 0)
      n_non200 = n_non200 + (t:get("non200") or 0)
      n_bad = n_bad + (t:get("badbody") or 0)
      sample = sample or t:get("badsample")
   end
   local e = summary.errors
   io.write(string.format(
      'JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"responses":%d,"non200":%d,"badbody":%d,"badsample":%s,' ..
      '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      n_resp, n_non200, n_bad, sample and json_string(sample) or "null",
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
