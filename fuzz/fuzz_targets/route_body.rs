//! libFuzzer target: see `tm_fuzz::route_body` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tm_fuzz::route_body(data));
