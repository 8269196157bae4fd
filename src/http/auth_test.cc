#include "http/auth.h"

#include <gtest/gtest.h>

namespace orderflow::http {
namespace {

TEST(ApiKeySpec, ParsesKeyTenantAndRoles) {
  auto k = parse_api_key_spec("0123456789abcdef:acme:client+admin");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->key, "0123456789abcdef");
  EXPECT_EQ(k->principal.tenant, "acme");
  EXPECT_TRUE(k->principal.has(kRoleClient));
  EXPECT_TRUE(k->principal.has(kRoleAdmin));
  EXPECT_FALSE(k->principal.has(kRoleWorker));
  EXPECT_EQ(format_api_key_spec(*k), "0123456789abcdef:acme:client+admin");
}

TEST(ApiKeySpec, BoundsAndErrors) {
  EXPECT_TRUE(parse_api_key_spec(std::string(16, 'k') + ":t:client").ok());
  EXPECT_FALSE(parse_api_key_spec(std::string(15, 'k') + ":t:client").ok());
  EXPECT_TRUE(parse_api_key_spec(std::string(256, 'k') + ":t:client").ok());
  EXPECT_FALSE(parse_api_key_spec(std::string(257, 'k') + ":t:client").ok());
  EXPECT_TRUE(parse_api_key_spec("0123456789abcdef:" + std::string(64, 't') + ":worker").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcdef:" + std::string(65, 't') + ":worker").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcdef::client").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcdef:t:root").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcdef:t:client+").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcdef:t").ok());
  EXPECT_FALSE(parse_api_key_spec("0123456789abcde!:t:client").ok());
}

TEST(ApiKeys, FindAndDuplicates) {
  ApiKeys keys;
  ASSERT_TRUE(keys.add(*parse_api_key_spec("0123456789abcdef:a:client")).ok());
  EXPECT_FALSE(keys.add(*parse_api_key_spec("0123456789abcdef:b:admin")).ok());
  ASSERT_NE(keys.find("0123456789abcdef"), nullptr);
  EXPECT_EQ(keys.find("0123456789abcdef")->tenant, "a");
  EXPECT_EQ(keys.find("0123456789abcdeF"), nullptr);
  EXPECT_EQ(keys.find(""), nullptr);
}

TEST(BearerToken, SchemeIsCaseInsensitive) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token(""), "");
}

}  // namespace
}  // namespace orderflow::http
