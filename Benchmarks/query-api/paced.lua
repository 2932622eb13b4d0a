-- wrk script: random-twin.lua at a fixed request rate. Debian's wrk is not wrk2 (no -R), so
-- each connection waits between requests with the delay() hook: with C connections and a target
-- of R requests/s, every connection sends one request per C/R seconds. The wait runs after the
-- response, so the service time is subtracted once a second from what each thread measured.
--
--   wrk -t2 -c64 -d15s --latency -s paced.lua http://127.0.0.1:18080 -- COUNT PREFIX RATE CONNECTIONS THREADS
--
-- wrk's latency is from sending a request to its response (the wait excluded) and, unlike wrk2,
-- is not corrected for coordinated omission: a stall delays the next requests instead of
-- counting against them.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "random-twin.lua")

local base_init = init
local period_ms, delay_ms, carry = 0, 0, 0
local sent, second, per_thread_connections
local full_second = false  -- the first second after init is partial: not a measurement

function init(args)
   base_init(args)
   local rate = tonumber(args[3]) or 5000
   local connections = tonumber(args[4]) or 64
   local threads = tonumber(args[5]) or 2
   per_thread_connections = connections / threads
   period_ms = 1000 * connections / rate  -- per connection, = C/R seconds
   delay_ms = period_ms
   sent, second = 0, os.time()
end

request = function()
   sent = sent + 1
   return twin_request()
end

-- wrk takes whole milliseconds: carry the fraction so the mean wait is delay_ms.
function delay()
   local now = os.time()
   if now ~= second then
      -- Last second this thread sent `sent` requests: its connections' cycle was
      -- connections/sent s, i.e. the wait plus the service time. Correct the wait by the difference.
      if full_second and sent > 0 and now == second + 1 then
         local cycle_ms = 1000 * per_thread_connections / sent
         delay_ms = math.max(0, math.min(4 * period_ms, delay_ms + (period_ms - cycle_ms) * 0.5))
      end
      sent, second, full_second = 0, now, true
   end
   local wait = delay_ms + carry
   local whole = math.floor(wait)
   carry = wait - whole
   return whole
end
