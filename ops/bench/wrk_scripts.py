"""The wrk Lua scripts of ``marconi bench compare`` (the queue comes from ``WRK_QUEUE``).

* ``post(n)``: POST ``n`` small messages per request.
* ``one(method, path, body)``: the same request again and again (``path`` under the queue).
* ``CLAIM_DELETE``: a consumer loop — claim up to 10 messages, then delete each one with its
  claim id (deletes go first). ``done`` prints what wrk itself does not know, from the
  answers: messages *claimed* (hrefs in 201 claim bodies) and *deleted* (DELETEs answered
  204), requests sent of each kind, non-2xx answers (``failed``). wrk does not say which
  request a response answers, so each thread tracks the one request its connection has in
  flight: run it with one connection per thread (``-t N -cN``); ``overlaps`` counts the
  times a thread had two in flight (then the counts are not to be trusted).
"""

from __future__ import annotations

CLIENT_ID = "3381af92-2b9e-11e3-b191-71861300734c"
PROJECT = "marconi-bench"

_HEADERS = f"""
local headers = {{["Content-Type"] = "application/json", ["Client-ID"] = "{CLIENT_ID}",
                 ["X-Project-ID"] = "{PROJECT}"}}
local base = "/v2/queues/" .. os.getenv("WRK_QUEUE")
"""


def post(messages: int) -> str:
    one = '{"ttl": 300, "body": {"event": "single", "n": 1}}'
    body = '{"messages": [' + ", ".join([one] * messages) + "]}"
    return _HEADERS + f"""
wrk.method = "POST"
wrk.path = base .. "/messages"
wrk.headers = headers
wrk.body = '{body}'
"""


def one(method: str, path: str, body: str | None = None) -> str:
    return _HEADERS + f"""
wrk.method = "{method}"
wrk.path = base .. "{path}"
wrk.headers = headers
""" + ("" if body is None else f"wrk.body = '{body}'\n")


CLAIM_DELETE = _HEADERS + """
local threads = {}
local pending = {}
local inflight = nil  -- what this thread's one connection waits for: "claim" or a path
-- globals: done() runs in another Lua state and reads them through thread:get
claimed, deleted, claims, deletes, failed, overlaps = 0, 0, 0, 0, 0, 0

function setup(thread)
  threads[#threads + 1] = thread
end
local claim_body = '{"ttl": 300, "grace": 60}'

local calls, answers = 0, 0

function request()
  calls = calls + 1
  if inflight ~= nil then
    if calls == 2 and answers == 0 then
      claims = claims - 1  -- the first call was wrk's own check of the script: never sent
    else
      overlaps = overlaps + 1  -- two requests in flight: run one connection per thread
    end
  end
  local n = #pending
  if n > 0 then
    local path = pending[n]
    pending[n] = nil
    inflight = path
    deletes = deletes + 1
    return wrk.format("DELETE", path, headers, nil)
  end
  inflight = "claim"
  claims = claims + 1
  return wrk.format("POST", base .. "/claims?limit=10", headers, claim_body)
end

function response(status, hdrs, body)
  answers = answers + 1
  local answered = inflight
  inflight = nil
  if answered == "claim" then
    if status == 201 and body then
      for href in string.gmatch(body, '"href"%s*:%s*"([^"]+claim_id=[^"]+)"') do
        pending[#pending + 1] = href
        claimed = claimed + 1
      end
    elseif status ~= 204 then
      failed = failed + 1
    end
  elseif answered ~= nil then
    if status == 204 then
      deleted = deleted + 1
    else
      failed = failed + 1
    end
  end
end

function done(summary, latency, requests)
  local t = {claimed = 0, deleted = 0, claims = 0, deletes = 0, failed = 0, overlaps = 0}
  for _, thread in ipairs(threads) do
    for name, value in pairs(t) do
      t[name] = value + thread:get(name)
    end
  end
  io.write(string.format(
    "claimed %d deleted %d claims %d deletes %d failed %d overlaps %d\\n",
    t.claimed, t.deleted, t.claims, t.deletes, t.failed, t.overlaps))
end
"""
