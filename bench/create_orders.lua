-- wrk script: POST /v1/orders with a unique Idempotency-Key per request.
-- Usage: ORDERFLOW_API_KEY=... wrk -t2 -c64 -d10s -s bench/create_orders.lua http://127.0.0.1:8080
local key = os.getenv("ORDERFLOW_API_KEY") or "missing-key"
local thread_counter = 0
local threads = {}

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  prefix = string.format("wrk-%d-%d-", os.time(), tid)
end

function request()
  n = n + 1
  local body = string.format(
    '{"customer_id":"c-%d","merchant_id":"m-%d","items":[{"sku":"burger","quantity":2,' ..
    '"unit_price_cents":899},{"sku":"fries","quantity":1,"unit_price_cents":350}],' ..
    '"currency":"USD","payment_method":"tok_visa","delivery_address":"1 Main St, Springfield",' ..
    '"tip_cents":200,"metadata":{"channel":"wrk"}}', n % 5000, n % 300)
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. n,
  }, body)
end

function response(status, headers, body)
  if status ~= 201 then
    errors = (errors or 0) + 1
  end
end
