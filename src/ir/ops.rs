//! Op families: which ONNX op types behave alike, listed once. Rank
//! propagation (`analysis::ranks`), the channel-flow rules
//! (`analysis::dependency::rules`) and the quantization registry
//! (`quant::registry`) read these lists, so an op added here is known to all.

/// One data input, output of the same shape, element by element (activations,
/// casts, unary math). Extra inputs, where an op has them, are scalars
/// (Clip's bounds, Dropout's ratio).
pub const ELEMENTWISE_UNARY: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Erf",
    "Gelu",
    "Elu",
    "Selu",
    "Celu",
    "Mish",
    "Softplus",
    "Softsign",
    "ThresholdedRelu",
    "Exp",
    "Log",
    "Abs",
    "Neg",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Not",
    "IsNaN",
    "IsInf",
    "Identity",
    "Dropout",
    "Cast",
    "Clip",
];

/// Element by element over inputs broadcast together (numpy rules): each
/// output element reads the same position of every input.
pub const BROADCAST: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitShift",
];

/// Normalization per channel on axis 1, with per-channel parameters.
pub const CHANNEL_NORMALIZATION: &[&str] = &["BatchNormalization", "InstanceNormalization"];

/// Windows over the spatial axes, channels kept apart.
pub const POOLING: &[&str] =
    &["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"];

/// The same values in another shape.
pub const RESHAPING: &[&str] = &["Flatten", "Reshape", "Squeeze", "Unsqueeze"];

/// Reductions over `axes` (attribute or input), `keepdims` keeping the rank.
pub const REDUCTIONS: &[&str] = &[
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL1",
    "ReduceL2",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
];

/// Normalized exponentials along one axis.
pub const SOFTMAX: &[&str] = &["Softmax", "LogSoftmax"];

/// Whether `op_type` is in `family`.
pub fn is(family: &[&str], op_type: &str) -> bool {
    family.contains(&op_type)
}
