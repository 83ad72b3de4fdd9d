-- wrk script for bench/: POST pre-signed, unique notifications from a pool file.
-- Usage: wrk ... -s bench/wrk_post.lua URL -- POOL_FILE THREADS [PATH_PREFIX]
-- POOL_FILE lines: path<TAB>x-request-id<TAB>x-signature<TAB>json body.
-- Thread k sends lines k, k+THREADS, ...; a thread that runs out starts again
-- (counted as "wrapped": those requests are redeliveries, answered "duplicate").
-- done() prints one JSON line with latency percentiles (microseconds) and errors.

local counter = 0
local threads = {}

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local pool = args[1]
   local nthreads = tonumber(args[2])
   local prefix = args[3] or ""
   requests = {}
   local i = 0
   for line in io.lines(pool) do
      if i % nthreads == id then
         local path, rid, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
         requests[#requests + 1] = wrk.format("POST", prefix .. path, {
            ["Content-Type"] = "application/json",
            ["x-request-id"] = rid,
            ["x-signature"] = sig,
         }, body)
      end
      i = i + 1
   end
   index = 0
   wrapped = 0
end

function request()
   index = index + 1
   if index > #requests then
      index = 1
      wrapped = wrapped + #requests
   end
   return requests[index]
end

function done(summary, latency, requests)
   local wrapped_total = 0
   for _, thread in ipairs(threads) do
      wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, '
         .. '"wrapped": %d, "errors": {"connect": %d, "read": %d, "write": %d, '
         .. '"status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, wrapped_total, e.connect, e.read, e.write,
      e.status, e.timeout))
end
