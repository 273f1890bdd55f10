//! make_batch on the embedded digits and toy points.

use candle_core::{DType, Device};
use genlab_data::{make_batch, Dataset, Digits, EpochSampler, Toy2d, Toy2dKind};

#[test]
fn digits_batch_has_images_and_labels() {
    let d = Digits::load().unwrap();
    let b = make_batch(&d, &[0, 1, 2], &Device::Cpu).unwrap();
    assert_eq!(b.x.dims(), &[3, 1, 8, 8]);
    assert_eq!(b.x.dtype(), DType::F32);
    let labels = b.labels.unwrap();
    assert_eq!(labels.dtype(), DType::U32);
    assert_eq!(labels.to_vec1::<u32>().unwrap(), vec![0, 1, 2]);
    let first: Vec<f32> =
        b.x.get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
    let mut want = vec![0f32; 64];
    d.write_example(0, &mut want);
    assert_eq!(first, want);
}

#[test]
fn toy_batches_carry_labels_where_the_kind_has_parts_and_bad_indices_are_errors() {
    let t = Toy2d::new(Toy2dKind::Rings, 50, 1);
    let mut s = EpochSampler::new(t.len(), 4);
    let idx = s.next_indices(16);
    let b = make_batch(&t, &idx, &Device::Cpu).unwrap();
    assert_eq!(b.x.dims(), &[16, 2]);
    let labels: Vec<u32> = b.labels.unwrap().to_vec1().unwrap();
    let want: Vec<u32> = idx.iter().map(|&i| t.label(i).unwrap()).collect();
    assert_eq!(labels, want);
    let roll = Toy2d::new(Toy2dKind::SwissRoll, 8, 1);
    assert!(make_batch(&roll, &[0, 1], &Device::Cpu)
        .unwrap()
        .labels
        .is_none());
    let e = make_batch(&t, &[3, 50], &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("index 50") && e.contains("50 examples"), "{e}");
    assert!(make_batch(&t, &[], &Device::Cpu).is_err());
}
