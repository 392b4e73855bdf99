#![no_main]
// Property: see distributed_counter_fuzz::hex_text.
libfuzzer_sys::fuzz_target!(|data: &[u8]| distributed_counter_fuzz::hex_text(data));
