//! libFuzzer target: see `tm_fuzz::cursor` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tm_fuzz::cursor(data));
