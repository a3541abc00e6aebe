//! Constants wherever an exporter put them: initializers, `Constant` nodes
//! (Paddle2ONNX puts every weight there) and initializers that are also graph
//! inputs (old IR). Passes ask here, so they see all three the same way.

use super::{AttrValue, Graph, Tensor};
use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};

/// Where a constant lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstantSite {
    /// An initializer (its index in `Graph::initializers`).
    Initializer(usize),
    /// A `Constant` node (its index).
    ConstantNode(usize),
}

impl Graph {
    /// Where the constant named `name` lives, if it is one. An initializer that
    /// is also a graph input counts: exporters use that for weights, and
    /// runtimes treat it as the value unless the caller overrides it.
    pub fn constant_site(&self, name: &str) -> Option<ConstantSite> {
        if let Some(k) = self.initializers.iter().position(|t| t.name == name) {
            return Some(ConstantSite::Initializer(k));
        }
        self.nodes
            .iter()
            .position(|n| n.op_type == "Constant" && n.is_onnx_op() && n.outputs.first().is_some_and(|o| o == name))
            .map(ConstantSite::ConstantNode)
    }

    /// The value of constant `name` (named `name` whatever its site).
    pub fn constant(&self, name: &str) -> Option<Result<Tensor>> {
        Some(match self.constant_site(name)? {
            ConstantSite::Initializer(k) => Ok(self.initializers[k].clone()),
            ConstantSite::ConstantNode(n) => constant_node_value(&self.nodes[n]).map(|mut t| {
                t.name = name.to_string();
                t
            }),
        })
    }

    /// Replaces the value of constant `name` where it lives, keeping its site.
    pub fn set_constant(&mut self, name: &str, mut value: Tensor) -> Result<()> {
        value.name = name.to_string();
        match self.constant_site(name) {
            Some(ConstantSite::Initializer(k)) => {
                super::tensor::release(&self.initializers[k]);
                self.initializers[k] = value;
            }
            Some(ConstantSite::ConstantNode(n)) => {
                let node = &mut self.nodes[n];
                value.name.clear();
                // A Constant carries exactly one value attribute: swap it.
                node.attributes.retain(|a| !a.name.starts_with("value") && a.name != "sparse_value");
                node.attributes.insert(
                    0,
                    super::Attribute {
                        name: "value".into(),
                        value: AttrValue::Tensor(Box::new(value)),
                        doc_string: String::new(),
                        ref_attr_name: String::new(),
                    },
                );
            }
            None => return Err(Error::Model(format!("'{name}' is not a constant"))),
        }
        Ok(())
    }

    /// Removes constant `name` from wherever it lives (and from the graph inputs,
    /// where an old-IR initializer is also listed).
    pub fn remove_constant(&mut self, name: &str) -> Result<()> {
        match self.constant_site(name) {
            Some(ConstantSite::Initializer(k)) => {
                super::tensor::release(&self.initializers.remove(k));
                self.inputs.retain(|i| i.name != name);
            }
            Some(ConstantSite::ConstantNode(n)) => {
                self.nodes.remove(n);
            }
            None => return Err(Error::Model(format!("'{name}' is not a constant"))),
        }
        Ok(())
    }

    /// Names of all constants of this graph, in file order (initializers first).
    pub fn constant_names(&self) -> Vec<String> {
        let inits = self.initializers.iter().map(|t| t.name.clone());
        let nodes = self
            .nodes
            .iter()
            .filter(|n| n.op_type == "Constant" && n.is_onnx_op())
            .filter_map(|n| n.outputs.first().cloned());
        inits.chain(nodes).collect()
    }
}

/// The tensor a `Constant` node produces, from whichever `value*` attribute it has.
pub fn constant_node_value(node: &super::Node) -> Result<Tensor> {
    let err = || Error::Model(format!("Constant node '{}' has no value attribute", node.label()));
    let attr = node.attributes.first().ok_or_else(err)?;
    let vec1 = |v: Vec<f32>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
    Ok(match (&attr.name[..], &attr.value) {
        ("value", AttrValue::Tensor(t)) => (**t).clone(),
        ("value_float", AttrValue::Float(f)) => Tensor::scalar("", *f),
        ("value_int", AttrValue::Int(i)) => Tensor::scalar("", *i),
        ("value_floats", AttrValue::Floats(v)) => Tensor::from_array("", &vec1(v.clone())),
        ("value_ints", AttrValue::Ints(v)) => {
            Tensor::from_array("", &ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone()).expect("1-d"))
        }
        _ => {
            return Err(Error::Model(format!(
                "Constant node '{}': attribute '{}' is not supported here",
                node.label(),
                attr.name
            )))
        }
    })
}
