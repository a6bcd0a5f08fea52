//===- MMAttrs.cpp - mm attributes: parsers, printers, verifiers ------------===//
#include "mm/Dialect/MMDialect.h"

#include "mlir/IR/Builders.h"

#include <cmath>
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mm;

#include "mm/Dialect/MMEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "mm/Dialect/MMAttrs.cpp.inc"

//===----------------------------------------------------------------------===//
// SeqLayoutAttr: #mm.seq_layout<query = 32, text = 32>
//===----------------------------------------------------------------------===//

Attribute SeqLayoutAttr::parse(AsmParser &parser, Type) {
  SmallVector<StringAttr> names;
  SmallVector<int64_t> sizes;
  auto parseSegment = [&]() -> ParseResult {
    std::string name;
    int64_t size;
    if (parser.parseKeywordOrString(&name) || parser.parseEqual() ||
        parser.parseInteger(size))
      return failure();
    names.push_back(StringAttr::get(parser.getContext(), name));
    sizes.push_back(size);
    return success();
  };
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::LessGreater, parseSegment))
    return {};
  return parser.getChecked<SeqLayoutAttr>(parser.getContext(), names, sizes);
}

void SeqLayoutAttr::print(AsmPrinter &printer) const {
  printer << "<";
  for (size_t i = 0; i < getNames().size(); ++i) {
    if (i) printer << ", ";
    printer << getNames()[i].getValue() << " = " << getSizes()[i];
  }
  printer << ">";
}

LogicalResult SeqLayoutAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                    ArrayRef<StringAttr> names, ArrayRef<int64_t> sizes) {
  if (names.empty())
    return emitError() << "a sequence layout needs at least one segment";
  if (names.size() != sizes.size())
    return emitError() << "sequence layout has " << names.size() << " names but "
                       << sizes.size() << " sizes";
  for (size_t i = 0; i < names.size(); ++i) {
    if (sizes[i] <= 0)
      return emitError() << "segment '" << names[i].getValue()
                         << "' must have a positive length, got " << sizes[i];
    for (size_t j = 0; j < i; ++j)
      if (names[j] == names[i])
        return emitError() << "segment '" << names[i].getValue() << "' appears twice";
  }
  return success();
}

int64_t SeqLayoutAttr::getTotal() const {
  int64_t total = 0;
  for (int64_t s : getSizes()) total += s;
  return total;
}

int64_t SeqLayoutAttr::indexOf(StringRef name) const {
  for (size_t i = 0; i < getNames().size(); ++i)
    if (getNames()[i].getValue() == name) return static_cast<int64_t>(i);
  return -1;
}

//===----------------------------------------------------------------------===//
// InitAttr: #mm.init<zeros> | #mm.init<ones> | #mm.init<normal, 0.02> | #mm.init<constant, 0.07>
//===----------------------------------------------------------------------===//

Attribute InitAttr::parse(AsmParser &parser, Type) {
  std::string kindName;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() || parser.parseKeywordOrString(&kindName))
    return {};
  std::optional<InitKind> kind = symbolizeInitKind(kindName);
  if (!kind) {
    parser.emitError(loc) << "unknown initialiser '" << kindName
                          << "'; expected zeros, ones, normal or constant";
    return {};
  }
  double scale = 0.0;
  if (*kind == InitKind::Normal) {
    if (parser.parseComma() || parser.parseFloat(scale))
      return {};
    if (scale <= 0.0) {
      parser.emitError(loc) << "normal initialiser needs a positive standard deviation";
      return {};
    }
  } else if (*kind == InitKind::Constant) {
    if (parser.parseComma() || parser.parseFloat(scale))
      return {};
    if (!std::isfinite(scale)) {
      parser.emitError(loc) << "constant initialiser needs a finite value";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return InitAttr::get(parser.getContext(), *kind, llvm::APFloat(scale));
}

void InitAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyInitKind(getKind());
  if (getKind() == InitKind::Normal || getKind() == InitKind::Constant)
    printer << ", " << getScale().convertToDouble();
  printer << ">";
}

void MMDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "mm/Dialect/MMAttrs.cpp.inc"
      >();
}
