#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| auditrelay::fuzzing::aitronos_page(data));
