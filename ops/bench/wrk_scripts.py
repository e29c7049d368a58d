"""The wrk Lua scripts of ``marconi bench compare`` (the queue comes from ``WRK_QUEUE``).

* ``post(n)``: POST ``n`` small messages per request.
* ``CLAIM_DELETE``: a consumer loop — claim up to 10 messages, then delete each one with its
  claim id (deletes go first, so the figure is messages claimed *and* deleted). ``done``
  prints the claimed and deleted counts, which wrk itself does not know.
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


CLAIM_DELETE = _HEADERS + """
local threads = {}
local pending = {}
-- globals: done() runs in another Lua state and reads them through thread:get
claimed, deleted, claims = 0, 0, 0

function setup(thread)
  threads[#threads + 1] = thread
end
local claim_body = '{"ttl": 300, "grace": 60}'

function request()
  local n = #pending
  if n > 0 then
    local path = pending[n]
    pending[n] = nil
    deleted = deleted + 1
    return wrk.format("DELETE", path, headers, nil)
  end
  claims = claims + 1
  return wrk.format("POST", base .. "/claims?limit=10", headers, claim_body)
end

function response(status, hdrs, body)
  if status == 201 and body then
    for href in string.gmatch(body, '"href"%s*:%s*"([^"]+claim_id=[^"]+)"') do
      pending[#pending + 1] = href
      claimed = claimed + 1
    end
  end
end

function done(summary, latency, requests)
  local c, d, n = 0, 0, 0
  for _, t in ipairs(threads) do
    c, d, n = c + t:get("claimed"), d + t:get("deleted"), n + t:get("claims")
  end
  io.write(string.format("claimed %d deleted %d claims %d\\n", c, d, n))
end
"""
