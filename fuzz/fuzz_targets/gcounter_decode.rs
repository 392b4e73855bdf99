#![no_main]
// Property: see distributed_counter_fuzz::gcounter_decode.
libfuzzer_sys::fuzz_target!(|data: &[u8]| distributed_counter_fuzz::gcounter_decode(data));
