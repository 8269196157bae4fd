// Test helper: a valid order request, for tests that need orders but not particular ones.
#pragma once

#include <string>

#include "core/order.h"

namespace orderflow::testing {

inline OrderRequest sample_request(const std::string& customer, const std::string& merchant) {
  OrderRequest r;
  r.customer_id = customer;
  r.merchant_id = merchant;
  r.items = {{"sku-1", 1, 100}};
  r.currency = "USD";
  r.payment_method = "tok_visa";
  r.delivery_address = "1 Main St";
  return r;
}

}  // namespace orderflow::testing
