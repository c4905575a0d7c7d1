// The installed API: cq/cq.h compiles on its own and pulls in no third-party header (a consumer of the
// installed package has neither nlohmann/json nor cq's internal headers).
#include "cq/cq.h"

#if defined(INCLUDE_NLOHMANN_JSON_HPP_) || defined(NLOHMANN_JSON_VERSION_MAJOR)
#error "a public header includes nlohmann/json.hpp"
#endif

#include <gtest/gtest.h>

TEST(public_api, UmbrellaHeaderStandsAlone) {
    EXPECT_EQ(cq::dtype_name(cq::DType::F32), "f32");
    EXPECT_EQ(cq::calib::method_name(cq::calib::Method::entropy), "entropy");
}
