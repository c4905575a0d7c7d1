// `cq info --layers` and `cq stats`: the model spine's Linears as tables or JSON, shared by both commands.
#pragma once

#include <nlohmann/json.hpp>

#include "cq/layer_stats.h"
#include "cq/model.h"

namespace cq::cli {

/// Every layer with weights (Linears, embeddings, norms) as JSON, `linears_only` keeping the Linears.
nlohmann::json layers_to_json(const Model& model, bool linears_only);
void print_layers(const Model& model, bool linears_only);

}  // namespace cq::cli
