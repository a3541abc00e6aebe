//! Codebooks on small weights.

use super::*;

#[test]
fn kmeans_finds_clusters_and_weights_move_them() {
    let values = [0.0f32, 0.1, 0.2, 10.0, 10.1, 10.2];
    let c = kmeans_1d(&values, None, 2);
    assert_eq!(c.len(), 2);
    assert!((c[0] - 0.1).abs() < 1e-3 && (c[1] - 10.1).abs() < 1e-2, "{c:?}");
    let heavy = [1.0f32, 1.0, 100.0, 1.0, 1.0, 1.0];
    let w = kmeans_1d(&values, Some(&heavy), 2);
    assert!((w[0] - 0.2).abs() < 0.02, "a heavy value pulls its centroid: {w:?}");
    assert_eq!(kmeans_1d(&[3.0; 10], None, 16), vec![3.0], "one distinct value, one centroid");
}

#[test]
fn log2_levels_are_signed_powers_of_two() {
    let l = log2_levels(1.0, 4);
    assert_eq!(l.len(), 15);
    assert_eq!(l[7], 0.0);
    assert_eq!(l[14], 1.0);
    assert_eq!(l[13], 0.5);
    assert_eq!(l[0], -1.0);
    assert_eq!(nearest(&l, 0.3), 13 - 1, "0.3 is nearest 0.25");
    assert_eq!(nearest(&l, -2.0), 0);
}

#[test]
fn rows_put_the_channel_axis_first() {
    let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(rows_of(&w, 1), ndarray::arr2(&[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]));
    assert_eq!(rows_of(&w, 0), ndarray::arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
}
