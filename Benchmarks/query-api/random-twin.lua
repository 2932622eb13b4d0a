-- wrk script: GET /v1/twins/<id> of a random seeded twin (`twinctl seed-twins` ids:
-- <prefix><index zero-padded to 6>, index 0..count-1) per request.
--
--   wrk -t2 -c64 -d15s --latency -s random-twin.lua http://127.0.0.1:18080 -- COUNT [PREFIX]
--
-- The API key comes from the environment, API_KEY (sent as `Authorization: Bearer <key>`);
-- unset or empty sends no Authorization header (a query-api with AUTH_DISABLED=true).
-- Responses are not inspected (a response() hook slows wrk down): wrk's own "Non-2xx or 3xx
-- responses" line counts every status >= 400. WRK_STATUSES=1 adds the hook and prints
-- "status <code>: <count>" lines at the end, to tell 404s from 401s or 429s.

local count, prefix = 100000, "pump-"
local head, tail  -- the request text around the twin id

local next_thread = 0
function setup(thread)
   thread:set("thread_number", next_thread)
   next_thread = next_thread + 1
end

-- Each wrk thread has its own Lua state: init runs once per thread.
function init(args)
   count = tonumber(args[1]) or count
   prefix = args[2] or prefix
   local key = os.getenv("API_KEY")
   if key and key ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. key
   end
   local template = wrk.format("GET", "/v1/twins/@ID@")
   local at = template:find("@ID@", 1, true)
   head, tail = template:sub(1, at - 1), template:sub(at + 4)
   math.randomseed(os.time() * 16 + (thread_number or 0))
end

function twin_request()
   return head .. prefix .. string.format("%06d", math.random(0, count - 1)) .. tail
end

request = twin_request

if os.getenv("WRK_STATUSES") == "1" then
   local threads = {}
   local base_setup = setup
   function setup(thread)
      base_setup(thread)
      table.insert(threads, thread)
   end
   statuses = {}  -- per thread (global, so done() can read it with thread:get)
   function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
   end
   function done(summary, latency, requests)
      local total = {}
      for _, thread in ipairs(threads) do
         for status, n in pairs(thread:get("statuses") or {}) do total[status] = (total[status] or 0) + n end
      end
      for status, n in pairs(total) do io.write(string.format("status %d: %d\n", status, n)) end
   end
end
