fn main() {
    let a: Vec<String> = std::env::args().collect();
    let m = prunq::onnx::load(&a[1]).unwrap();
    let names: Vec<String> = m.graph.nodes.iter().flat_map(|n| n.outputs.clone()).collect();
    let ds = prunq::data::Dataset::open(&a[2]).unwrap();
    let b = ds.bind(&prunq::runtime::feed_inputs(&m), None).unwrap();
    let inputs: Vec<_> = b.inputs.iter().map(|x| x.rows(0, 4)).collect();
    let s = prunq::runtime::Session::new(
        &m,
        &prunq::runtime::SessionOptions { capture: names.clone(), capture_only: true, ..Default::default() },
    )
    .unwrap();
    let out = s.run(&inputs).unwrap();
    let mut map = std::collections::BTreeMap::new();
    for (n, o) in names.iter().zip(out) {
        map.insert(n.replace('/', "_"), o);
    }
    prunq::data::npz::write(std::path::Path::new(&a[3]), &map).unwrap();
}
