"""Vocabulary of the ONNX front end: which operators move data, compute element-wise, or quantize.

These sets decide how a node is read before any parser sees it; they hold operator types of
the default ONNX domain (``""`` / ``"ai.onnx"``).
"""

from __future__ import annotations

from onnx import TensorProto

#: Node metadata the dynamo exporter writes: the module classes and module paths a node came from.
CLASS_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"

#: Operators that only move or re-describe data: no layer.
DATA_MOVEMENT_OPS: frozenset[str] = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Shape", "Size", "Constant",
    "ConstantOfShape", "Cast", "CastLike", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
    "Expand", "Tile", "Dropout", "Range", "Pad", "DepthToSpace", "SpaceToDepth", "SplitToSequence",
    "ScatterElements", "ScatterND", "EyeLike", "OneHot",
})
#: Quantization boundaries: free in the canonical graph, where a tensor lives once at the width
#: of its quantized form (an int8 accelerator requantizes in the output stage of the layer
#: before and reads 8-bit data in the layer after).
QUANTIZATION_OPS: frozenset[str] = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Operators whose output shares its input's memory (and, for peak memory, is the same tensor).
VIEW_OPS: frozenset[str] = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
                                      *QUANTIZATION_OPS})
ELEMENTWISE_OPS: frozenset[str] = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Sign", "Floor",
    "Ceil", "Round", "Mod", "Max", "Min", "Mean", "Sum", "Clip", "Erf", "Where", "Equal", "Less", "LessOrEqual",
    "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Sin", "Cos",
    "Softmax", "LogSoftmax", "Hardmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ArgMax", "ArgMin", "CumSum", "TopK",
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "LpNormalization", "MeanVarianceNormalization", "Resize", "Upsample", "GlobalAveragePool", "GlobalMaxPool",
    "DynamicQuantizeLinear",
})
POOL_OPS: frozenset[str] = frozenset({"MaxPool", "AveragePool", "LpPool"})
#: Element-wise operators of onnxruntime's ``com.microsoft`` domain on quantized tensors.
MICROSOFT_ELEMENTWISE_OPS: frozenset[str] = frozenset({
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearGlobalAveragePool",
})
#: Operators never constant-folded, whatever their inputs.
NONDETERMINISTIC_OPS: frozenset[str] = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
})
#: Operators whose output is known once their input's shape is.
SHAPE_OPS: frozenset[str] = frozenset({"Shape", "Size"})

#: Input positions that hold quantization parameters (scales, zero points), never trained data.
QUANTIZATION_PARAMETER_INPUTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "ConvInteger": frozenset({2, 3}),
    "MatMulInteger": frozenset({2, 3}),
    "QGemm": frozenset({1, 2, 4, 5, 7, 8}),
    "QLinearAdd": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearGlobalAveragePool": frozenset({1, 2, 3, 4}),
    "QLinearAveragePool": frozenset({1, 2, 3, 4}),
    "QLinearSigmoid": frozenset({1, 2, 3, 4}),
    "QLinearLeakyRelu": frozenset({1, 2, 3, 4}),
    "QLinearSoftmax": frozenset({1, 2, 3, 4}),
}

#: Bits of one element of each ONNX element type.
ELEMENT_BITS: dict[int, int] = {
    TensorProto.FLOAT: 32, TensorProto.DOUBLE: 64, TensorProto.FLOAT16: 16, TensorProto.BFLOAT16: 16,
    TensorProto.INT8: 8, TensorProto.UINT8: 8, TensorProto.INT16: 16, TensorProto.UINT16: 16,
    TensorProto.INT32: 32, TensorProto.UINT32: 32, TensorProto.INT64: 64, TensorProto.UINT64: 64,
    TensorProto.BOOL: 8, TensorProto.FLOAT8E4M3FN: 8, TensorProto.FLOAT8E4M3FNUZ: 8, TensorProto.FLOAT8E5M2: 8,
    TensorProto.FLOAT8E5M2FNUZ: 8, TensorProto.INT4: 4, TensorProto.UINT4: 4,
}
FLOAT_TYPES: frozenset[int] = frozenset({
    TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE, TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ,
})


def is_default_domain(domain: str) -> bool:
    """Whether ``domain`` names the default ONNX operator set."""
    return domain in ("", "ai.onnx")
