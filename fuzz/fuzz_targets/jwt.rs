//! libFuzzer target: see `tm_fuzz::jwt` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tm_fuzz::jwt(data));
