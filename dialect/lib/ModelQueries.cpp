//===- ModelQueries.cpp - facts about a whole mm.model ----------------------===//
#include "mm/Dialect/ModelQueries.h"

using namespace mlir;

namespace mm {

static ParameterInfo infoFor(ParamOp param, std::string name) {
  return {std::move(name), param.getTensorType(),
          param.getGroup() ? param.getGroup()->str() : std::string(),
          param.getInit()};
}

std::vector<ParameterInfo> collectParameters(ModelOp model) {
  std::vector<ParameterInfo> out;
  for (Operation &op : model.getBody().front()) {
    if (auto param = dyn_cast<ParamOp>(op)) {
      out.push_back(infoFor(param, param.getSymName().str()));
    } else if (auto layer = dyn_cast<LayerOp>(op)) {
      for (int64_t i = 0, e = static_cast<int64_t>(layer.getCount()); i < e; ++i)
        for (auto param : layer.getBody().getOps<ParamOp>())
          out.push_back(infoFor(param, layer.instanceParamName(i, param.getSymName())));
    }
  }
  return out;
}

int64_t countParameters(ModelOp model) {
  int64_t total = 0;
  for (const ParameterInfo &p : collectParameters(model))
    total += p.type.getNumElements();
  return total;
}

} // namespace mm
