//! The tract backend: a model made runnable by tract, returning its outputs
//! and any chosen intermediate tensors in the same pass; tract's typed model
//! for analysis.

use super::feed_inputs;
use super::profile::{Profile, Recorder};
use crate::data::Array;
use crate::ir::{DataType, Dim, Model, ValueInfo};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

type Plan = Arc<TypedRunnableModel>;

/// A model in tract: one optimized plan per input shape.
pub struct TractSession {
    /// The parsed model, before input facts are set; cloned per input shape.
    inference: InferenceModel,
    /// One optimized plan per distinct set of input shapes seen so far (a data
    /// set has at most two: full batches and the remainder). Concrete shapes let
    /// tract fold every shape computation, which symbolic ones do not always.
    plans: Mutex<BTreeMap<Vec<Vec<usize>>, Plan>>,
    inputs: Vec<ValueInfo>,
    /// Names of the returned tensors, in order.
    pub outputs: Vec<String>,
    /// Per-node times, when profiling.
    recorder: Option<Recorder>,
    /// The error to give if typing fails: the model has an op tract lacks.
    vendor_op: Option<Error>,
}

/// tract knows the standard ops only: an error naming the first vendor op
/// (e.g. ONNX Runtime's com.microsoft QLinearAdd), if the model has one.
fn vendor_op(model: &Model) -> Option<Error> {
    let n = model.graph.nodes.iter().find(|n| !n.is_onnx_op())?;
    Some(Error::Runtime(format!(
        "tract has no {} op of domain '{}' (node '{}'); ONNX Runtime may run it: runtime ort",
        n.op_type, n.domain, n.name
    )))
}

impl TractSession {
    /// `outputs`: the tensors to return, by ONNX name (graph outputs or any intermediate).
    pub fn new(model: &Model, outputs: Vec<String>, profile: bool) -> Result<TractSession> {
        super::guarded("loading the model", || TractSession::load(model, outputs, profile))
            .map_err(|e| vendor_op(model).unwrap_or(e))
    }

    fn load(model: &Model, outputs: Vec<String>, profile: bool) -> Result<TractSession> {
        let mut inference = inference_model(model)?;
        inference
            .select_outputs_by_name(&outputs)
            .map_err(|e| Error::Runtime(format!("cannot capture tensor: {e}")))?;
        let recorder = profile.then(Recorder::default);
        let vendor_op = vendor_op(model);
        let plans = Mutex::new(BTreeMap::new());
        Ok(TractSession { inference, plans, inputs: feed_inputs(model), outputs, recorder, vendor_op })
    }

    /// Time per (optimized) op type over the runs so far.
    pub fn profile(&self) -> Profile {
        self.recorder.as_ref().map(Recorder::profile).unwrap_or_default()
    }

    /// Runs one batch; `inputs` in the order of [`feed_inputs`].
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        super::guarded("running the model", || self.run_unguarded(inputs))
    }

    fn run_unguarded(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Runtime(format!("the model takes {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let plan = self.plan(inputs)?;
        let tv: TVec<TValue> = inputs.iter().map(|a| to_tract(a).into()).collect();
        let out = match &self.recorder {
            None => plan.run(tv),
            Some(recorder) => plan.spawn().and_then(|mut state| {
                state.run_plan_with_eval(tv, |ctx, op_state, node, input| {
                    let started = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                    recorder.record(&node.op().name(), started.elapsed());
                    out
                })
            }),
        }
        .map_err(|e| Error::Runtime(format!("tract failed to run the model: {e:#}")))?;
        out.iter().zip(&self.outputs).map(|(t, name)| from_tract(t, name)).collect()
    }

    fn plan(&self, inputs: &[Array]) -> Result<Plan> {
        let key: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape().to_vec()).collect();
        // A panic in tract while planning (caught above) must not poison later runs.
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&key) {
            return Ok(p.clone());
        }
        let shapes = self.inputs.iter().map(|i| i.name.clone()).zip(key.iter().cloned()).collect();
        let typed =
            with_input_facts(self.inference.clone(), &self.inputs, &shapes).map_err(|e| match &self.vendor_op {
                Some(Error::Runtime(m)) => Error::Runtime(m.clone()),
                _ => e,
            })?;
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| super::tract_error("tract cannot optimize the model", format!("{e:#}")))?;
        plans.insert(key, plan.clone());
        Ok(plan)
    }
}

/// Ranks tract's inference analysis finds, even where it cannot finish typing.
pub fn inference_ranks(model: &Model) -> Result<BTreeMap<String, usize>> {
    use tract_onnx::tract_hir::infer::Factoid;
    inference_facts(model, |fact| fact.shape.rank().concretize().map(|r| r as usize))
}

/// Element types tract's inference analysis finds, even where it cannot finish typing. Unlike
/// [`typed_model`]'s facts, they name the shape computations it would fold into constants.
pub fn inference_types(model: &Model) -> Result<BTreeMap<String, DataType>> {
    use tract_onnx::tract_hir::infer::Factoid;
    inference_facts(model, |fact| fact.datum_type.concretize().and_then(data_type_of))
}

/// What `read` tells of each labelled outlet's fact after tract's inference analysis.
fn inference_facts<T>(
    model: &Model,
    read: impl Fn(&tract_onnx::tract_hir::infer::InferenceFact) -> Option<T>,
) -> Result<BTreeMap<String, T>> {
    super::guarded("analysing the model", || {
        let mut inference = inference_model(&weights_as_inputs(model))?;
        // Obstinate: keep going past nodes it cannot fully analyse.
        let _ = inference.analyse(true);
        let mut facts = BTreeMap::new();
        for node in inference.nodes() {
            for (slot, out) in node.outputs.iter().enumerate() {
                let (Some(label), Some(fact)) = (inference.outlet_label(OutletId::new(node.id, slot)), read(&out.fact))
                else {
                    continue;
                };
                facts.insert(label.to_string(), fact);
            }
        }
        Ok(facts)
    })
}

pub(super) fn inference_model(model: &Model) -> Result<InferenceModel> {
    let bytes = crate::onnx::encode(&*super::lower::for_tract(model)?)?;
    let pb = <tract_onnx::pb::ModelProto as prost::Message>::decode(&*bytes)
        .map_err(|e| Error::Runtime(format!("tract cannot read the model: {e}")))?;
    let parsed = tract_onnx::onnx()
        .parse(&pb, None)
        .map_err(|e| super::tract_error("tract cannot load the model", format!("{e:#}")))?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(Error::Runtime(format!("unresolved inputs: {:?}", parsed.unresolved_inputs)));
    }
    Ok(parsed.model)
}

/// The model in tract's typed form, not yet optimized, with input facts from
/// the declared shapes (or `shapes`). Named dims become tract symbols.
pub fn typed_model(model: &Model, shapes: &BTreeMap<String, Vec<usize>>) -> Result<TypedModel> {
    let light = weights_as_inputs(model);
    super::guarded("typing the model", || with_input_facts(inference_model(&light)?, &feed_inputs(&light), shapes))
}

/// Float initializers of 1 KiB or more become graph inputs of the same type
/// and shape: shapes and ranks never depend on weight values, and tract then
/// analyses a model of any size without a copy of its weights.
pub(super) fn weights_as_inputs(model: &Model) -> Model {
    let mut light = Model { graph: Default::default(), ..model.clone() };
    let g = &model.graph;
    light.graph = crate::ir::Graph { initializers: vec![], ..g.clone() };
    for t in &g.initializers {
        if t.dtype.is_float() && t.byte_size() >= 1024 && !g.inputs.iter().any(|i| i.name == t.name) {
            light.graph.inputs.push(value_info_of(t));
        } else {
            light.graph.initializers.push(t.clone());
        }
    }
    light
}

fn value_info_of(t: &crate::ir::Tensor) -> ValueInfo {
    let dims: Vec<Dim> = t.dims.iter().map(|&d| Dim::Fixed(d)).collect();
    ValueInfo::tensor(&t.name, Some(t.dtype), Some(&dims))
}

fn with_input_facts(
    mut inference: InferenceModel,
    feeds: &[ValueInfo],
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<TypedModel> {
    set_input_facts(&mut inference, feeds, shapes)?;
    inference.into_typed().map_err(|e| super::tract_error("tract cannot type the model", format!("{e:#}")))
}

pub(super) fn set_input_facts(
    inference: &mut InferenceModel,
    feeds: &[ValueInfo],
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<()> {
    let mut symbols = BTreeMap::new();
    for (ix, input) in feeds.iter().enumerate() {
        let dt = datum_type(input.dtype().unwrap_or(DataType::FLOAT))
            .ok_or_else(|| Error::Runtime(format!("input '{}' has an unsupported type", input.name)))?;
        let dims: Vec<TDim> = match shapes.get(&input.name) {
            Some(s) => s.iter().map(|&d| d.to_dim()).collect(),
            None => input
                .shape()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(k, d)| match d {
                    Dim::Fixed(n) => (*n as usize).to_dim(),
                    Dim::Symbolic(s) if s != "?" => symbol(inference, &mut symbols, s),
                    _ => symbol(inference, &mut symbols, &format!("{}_{k}", input.name)),
                })
                .collect(),
        };
        let fact = if input.shape().is_some() || shapes.contains_key(&input.name) {
            InferenceFact::dt_shape(dt, dims)
        } else {
            InferenceFact::dt(dt)
        };
        inference.set_input_fact(ix, fact).map_err(|e| Error::Runtime(format!("input '{}': {e}", input.name)))?;
    }
    Ok(())
}

/// One tract symbol per distinct dim name, named so tract's parser accepts it.
fn symbol(model: &InferenceModel, symbols: &mut BTreeMap<String, Symbol>, name: &str) -> TDim {
    let next = symbols.len();
    symbols.entry(name.to_string()).or_insert_with(|| model.sym(&format!("S{next}"))).clone().into()
}

fn datum_type(dt: DataType) -> Option<DatumType> {
    Some(match dt {
        DataType::FLOAT => f32::datum_type(),
        DataType::DOUBLE => f64::datum_type(),
        DataType::INT64 => i64::datum_type(),
        DataType::INT32 => i32::datum_type(),
        DataType::INT8 => i8::datum_type(),
        DataType::UINT8 => u8::datum_type(),
        DataType::BOOL => bool::datum_type(),
        DataType::FLOAT16 => f16::datum_type(),
        _ => return None,
    })
}

/// The ONNX element type of a tract datum type (`TDim`, tract's shape integer, is int64).
pub fn data_type_of(dt: DatumType) -> Option<DataType> {
    [
        DataType::FLOAT,
        DataType::DOUBLE,
        DataType::INT64,
        DataType::INT32,
        DataType::INT8,
        DataType::UINT8,
        DataType::BOOL,
        DataType::FLOAT16,
    ]
    .into_iter()
    .find(|&t| datum_type(t) == Some(dt))
    .or((dt == DatumType::TDim).then_some(DataType::INT64))
}

fn to_tract(a: &Array) -> Tensor {
    match a {
        Array::F32(a) => a.clone().into_tensor(),
        Array::F64(a) => a.clone().into_tensor(),
        Array::I64(a) => a.clone().into_tensor(),
        Array::I32(a) => a.clone().into_tensor(),
        Array::I8(a) => a.clone().into_tensor(),
        Array::U8(a) => a.clone().into_tensor(),
        Array::Bool(a) => a.clone().into_tensor(),
    }
}

fn from_tract(t: &Tensor, name: &str) -> Result<Array> {
    let view = |e: anyhow::Error| Error::Runtime(format!("output '{name}': {e}"));
    Ok(match t.datum_type() {
        DatumType::F32 => Array::F32(t.to_plain_array_view::<f32>().map_err(view)?.to_owned()),
        DatumType::F64 => Array::F64(t.to_plain_array_view::<f64>().map_err(view)?.to_owned()),
        DatumType::I64 => Array::I64(t.to_plain_array_view::<i64>().map_err(view)?.to_owned()),
        DatumType::I32 => Array::I32(t.to_plain_array_view::<i32>().map_err(view)?.to_owned()),
        DatumType::I8 => Array::I8(t.to_plain_array_view::<i8>().map_err(view)?.to_owned()),
        DatumType::U8 => Array::U8(t.to_plain_array_view::<u8>().map_err(view)?.to_owned()),
        DatumType::Bool => Array::Bool(t.to_plain_array_view::<bool>().map_err(view)?.to_owned()),
        // Shape computations come out as symbolic dims: they are integers.
        DatumType::TDim | DatumType::I16 | DatumType::U16 | DatumType::U32 | DatumType::U64 => {
            let i = t.cast_to::<i64>().map_err(view)?;
            Array::I64(i.to_plain_array_view::<i64>().map_err(view)?.to_owned())
        }
        _ => {
            let f = t.cast_to::<f32>().map_err(view)?;
            Array::F32(f.to_plain_array_view::<f32>().map_err(view)?.to_owned())
        }
    })
}
