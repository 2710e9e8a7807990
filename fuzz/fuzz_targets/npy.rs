//! Fuzz target: any bytes as a `.npy` array. Reading must never panic; an array that reads
//! must hold exactly as many values as its shape says, and writing it back and reading that
//! again must give the same shape and the same bits.

#![no_main]

use archscope::exec::io::{read_npy, write_npy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = read_npy(data, "fuzz.npy") else {
        return;
    };
    assert_eq!(
        t.data.len(),
        t.shape.iter().product::<usize>(),
        "shape {:?}",
        t.shape
    );
    let again = read_npy(&write_npy(&t), "again.npy").expect("what archscope writes, it reads");
    assert_eq!(again.shape, t.shape);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&again.data), bits(&t.data));
});
