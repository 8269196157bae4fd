-- wrk script: GET /v1/orders/{id} over ids read from $ORDERFLOW_IDS_FILE (one per line).
local key = os.getenv("ORDERFLOW_API_KEY") or "missing-key"
local ids = {}
local n = 0

function init(args)
  for line in io.lines(os.getenv("ORDERFLOW_IDS_FILE")) do
    ids[#ids + 1] = line
  end
  n = math.random(1, #ids)
end

function request()
  n = n + 1
  local id = ids[(n * 7919) % #ids + 1]
  return wrk.format("GET", "/v1/orders/" .. id, {["Authorization"] = "Bearer " .. key})
end
